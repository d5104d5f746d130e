"""ClariCodec: intelligibility-first neural speech codec at 200 bit/s.

    import claricodec
    data = claricodec.encode(audio, sample_rate)   # -> .cc bytes
    audio, rate = claricodec.decode(data)           # -> float32 mono, 16000
"""
__version__ = "0.1.0"
__all__ = ["ClariCodec", "encode", "decode", "FormatError", "AudioError", "WeightsError"]


def __getattr__(name):
    # Lazy, so `claricodec.bitstream` (the format, no torch) imports without torch.
    if name in ("ClariCodec", "encode", "decode"):
        from . import api
        return getattr(api, name)
    if name == "FormatError":
        from .bitstream import FormatError
        return FormatError
    if name == "AudioError":
        from .audio import AudioError
        return AudioError
    if name == "WeightsError":
        from .weights_manifest import WeightsError
        return WeightsError
    raise AttributeError(name)
