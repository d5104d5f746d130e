import numpy as np
import pytest

from claricodec import bitstream
from claricodec.api import ClariCodec
from claricodec.audio import AudioError
from claricodec.bitstream import FormatError


def test_round_trip_length_rate_and_size(tiny_codec, speech):
    audio, rate = speech
    data = tiny_codec.encode(audio, rate)
    frames = -(-len(audio) // 640)
    # 12-byte header for this length (3-byte varint) + exactly one byte per frame.
    assert len(data) == 12 + frames
    out, out_rate = tiny_codec.decode(data)
    assert out_rate == 16000 and out.shape == (len(audio),) and out.dtype == np.float32


def test_same_input_same_bytes(tiny_codec, speech):
    audio, rate = speech
    assert tiny_codec.encode(audio, rate) == tiny_codec.encode(audio.copy(), rate)


def test_any_rate_and_channel_count(tiny_codec, speech):
    audio, rate = speech
    stereo = np.stack([audio, audio], axis=1)
    assert tiny_codec.encode(stereo, rate) == tiny_codec.encode(audio, rate)
    import soxr
    at_44k = soxr.resample(audio, rate, 44100)
    data = tiny_codec.encode(at_44k, 44100)
    assert bitstream.read_stream(data).header.num_samples == pytest.approx(len(audio), abs=2)


def test_block_crc_adds_one_byte_per_second(tiny_codec, speech):
    audio, rate = speech
    plain = tiny_codec.encode(audio, rate)
    with_crc = tiny_codec.encode(audio, rate, block_crc=True)
    frames = len(plain) - 12
    assert len(with_crc) == len(plain) + -(-frames // 25)
    assert np.array_equal(tiny_codec.decode(with_crc)[0], tiny_codec.decode(plain)[0])


def test_raw_mode_is_payload_only(tiny_codec, speech):
    audio, rate = speech
    raw = tiny_codec.encode(audio, rate, raw=True)
    assert raw == tiny_codec.encode(audio, rate)[12:]
    out, _ = tiny_codec.decode(raw, raw=True)
    assert len(out) == len(raw) * 640


def test_other_decoder_weights_are_refused(tiny_codec, speech, tmp_path, weights_factory):
    other = ClariCodec(weights_factory(tmp_path / "other", seed=1))
    data = other.encode(*speech)
    with pytest.raises(FormatError, match="other decoder weights"):
        tiny_codec.decode(data)


def test_bad_audio(tiny_codec):
    with pytest.raises(AudioError, match="empty"):
        tiny_codec.encode(np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="NaN"):
        tiny_codec.encode(np.array([0.0, np.nan] * 1000, np.float32), 16000)


def test_module_level_api_uses_env_weights(weights_env, speech):
    import claricodec
    from claricodec.api import default_codec
    default_codec.cache_clear()
    try:
        audio, rate = claricodec.decode(claricodec.encode(*speech))
        assert rate == 16000 and len(audio) == len(speech[0])
    finally:
        default_codec.cache_clear()
