"""The library API: audio in, .cc bytes out, and back.

    import claricodec
    data = claricodec.encode(audio, sample_rate)      # numpy [samples] or [samples, channels]
    audio, rate = claricodec.decode(data)              # float32, 16 kHz mono

Both use the shipped weights (or $CLARICODEC_WEIGHTS), loaded once. For other weights,
an RL/stage-1 encoder choice or CUDA, make a ClariCodec object and call its methods.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from . import bitstream
from .audio import AudioError, prepare, resample
from .bitstream import FormatError, Header
from .codec import WindowedEncoder
from .weights import load_codec


class ClariCodec:
    """A loaded codec: one model, many files."""

    def __init__(self, weights: str | Path | None = None, encoder: str | Path | None = None,
                 device: str = "cpu"):
        self.model, self.info = load_codec(weights, encoder, device)
        self.mode = self.model.mode
        self.model_id = bytes.fromhex(self.info["model_id"])

    # --- encode --------------------------------------------------------------------------

    def encode_indices(self, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
        """Audio at any rate/channels -> (frame indices, number of 16 kHz samples)."""
        pcm = prepare(audio, sample_rate, self.mode.sample_rate)
        if len(pcm) == 0:
            raise AudioError("audio is empty")
        return self.model.encode(pcm), len(pcm)

    def encode(self, audio: np.ndarray, sample_rate: int, *, block_crc: bool = False,
               raw: bool = False) -> bytes:
        indices, num_samples = self.encode_indices(audio, sample_rate)
        if raw:
            return bitstream.write_raw(indices.tolist(), self.mode.id)
        header = Header(mode=self.mode.id, model_id=self.model_id, num_samples=num_samples,
                        block_crc=block_crc)
        return bitstream.write_stream(header, indices.tolist())

    def stream_encoder(self) -> WindowedEncoder:
        """For input of unknown length: push() 16 kHz pieces, then finish()."""
        return WindowedEncoder(self.model)

    # --- decode --------------------------------------------------------------------------

    def parse(self, data: bytes, *, raw: bool = False, tolerate_crc_errors: bool = False
              ) -> bitstream.Stream:
        """Bytes -> Stream, checking that they were made for these decoder weights."""
        if raw:
            indices = bitstream.read_raw(data, self.mode.id)
            header = Header(mode=self.mode.id, model_id=self.model_id,
                            num_samples=len(indices) * self.mode.hop)
            return bitstream.Stream(header, indices, [])
        stream = bitstream.read_stream(data, tolerate_crc_errors=tolerate_crc_errors)
        if stream.header.model_id != self.model_id:
            raise FormatError(f"made for other decoder weights (model id "
                              f"{stream.header.model_id.hex()}, these weights are {self.model_id.hex()})")
        if stream.header.mode != self.mode.id:
            raise FormatError(f"mode {stream.header.mode} stream, but these weights are mode {self.mode.id}")
        return stream

    def decode_stream(self, stream: bitstream.Stream, rate: int | None = None,
                      erased: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        mask = np.zeros(len(stream.indices), dtype=bool)
        if stream.bad_frames:
            mask[stream.bad_frames] = True
        if erased is not None:
            mask |= erased[:len(mask)]
        audio = self.model.decode(np.asarray(stream.indices, dtype=np.int64), mask)
        if stream.header.num_samples:
            audio = audio[:stream.header.num_samples]
        rate = rate or self.mode.sample_rate
        return resample(audio, self.mode.sample_rate, rate), rate

    def decode(self, data: bytes, *, raw: bool = False, rate: int | None = None,
               tolerate_crc_errors: bool = False) -> tuple[np.ndarray, int]:
        stream = self.parse(data, raw=raw, tolerate_crc_errors=tolerate_crc_errors)
        return self.decode_stream(stream, rate)


@lru_cache(maxsize=1)
def default_codec() -> ClariCodec:
    return ClariCodec()


def encode(audio: np.ndarray, sample_rate: int) -> bytes:
    """Encode audio (any rate, any channel count) to .cc bytes with the shipped weights."""
    return default_codec().encode(audio, sample_rate)


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Decode .cc bytes to (float32 mono audio, 16000)."""
    return default_codec().decode(data)
