"""Entropy coding of frame indices: an integer arithmetic coder driven by a frozen table of
which code follows which (docs/bitstream.md, mode 2).

The codes are far from uniform: each one is much more likely after some codes than after
others (session 20 measured 6.45 bits a frame for the shipped codes against the 8 sent).
Mode 2 sends the same codes through an arithmetic coder whose probability of each code
is a row of a fixed table, picked by the code before it. Every quantity here is an
integer (Python ints, numpy int64), so every machine computes the same probabilities and
the same bits: one differing rounding would garble the rest of the stream.

The coder is the classic one of Witten, Neal and Cleary (1987) with 32-bit registers and
deferred ("pending") bits; it ends with two bits, then zero padding to a whole byte. It is
written out here rather than taken from a library because the libraries at hand emit whole
32-bit words and flush up to 32 bits more at the end, a sixth of a second's payload on
every short file. This module imports no torch.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

TABLE_DIR = Path(__file__).parent / "tables"
# Frozen: a mode's table is part of the format, so its bytes never change (DESIGN.md 2).
TABLE_SHA256 = {
    "context-v1": "31602331d6c421029b512a82dc15df2e64f88a12366c395f738253dd52bcd36d",
}
FREQ_BITS = 16
TOTAL = 1 << FREQ_BITS  # every row's frequencies sum to this

_BITS = 32
_TOP = (1 << _BITS) - 1
_HALF = 1 << (_BITS - 1)
_QUARTER = 1 << (_BITS - 2)


class EntropyFormatError(ValueError):
    """The coded bytes do not decode to a valid sequence. Message is one line."""


class ContextTable:
    """Frequencies [C + 1, C + 1]: row r is the distribution of a frame's code after code r
    (row C: the first frame), column C the end-of-stream mark. Integers >= 1, rows summing
    to TOTAL, so every code can follow every code."""

    def __init__(self, freqs: np.ndarray):
        freqs = np.asarray(freqs, dtype=np.int64)
        if freqs.ndim != 2 or freqs.shape[0] != freqs.shape[1] or freqs.shape[0] < 2:
            raise ValueError(f"context table must be square [C+1, C+1], got {freqs.shape}")
        if freqs.min() < 1 or np.any(freqs.sum(1) != TOTAL):
            raise ValueError(f"context table rows must be positive and sum to {TOTAL}")
        self.codebook_size = freqs.shape[0] - 1
        self.end = self.codebook_size  # the end-of-stream symbol (and the start context)
        self.cumulative = np.concatenate([np.zeros((len(freqs), 1), np.int64), freqs.cumsum(1)], 1)

    def bounds(self, before: int, symbol: int) -> tuple[int, int]:
        row = self.cumulative[before]
        return int(row[symbol]), int(row[symbol + 1])

    def bits(self, before: int, symbol: int) -> float:
        """What coding `symbol` after `before` costs, in bits (for reports)."""
        low, high = self.bounds(before, symbol)
        return float(np.log2(TOTAL / (high - low)))


def table_path(name: str) -> Path:
    return TABLE_DIR / f"{name}.safetensors"


@lru_cache(maxsize=None)
def load_table(name: str) -> ContextTable:
    """A frozen context table by name, checked against its pinned sha256."""
    from safetensors.numpy import load
    path = table_path(name)
    data = path.read_bytes()
    expected = TABLE_SHA256.get(name)
    if expected is None or hashlib.sha256(data).hexdigest() != expected:
        raise ValueError(f"context table {path} is missing or not the frozen one")
    tensors = load(data)
    if set(tensors) != {"freqs"}:
        raise ValueError(f"context table {path}: expected one tensor 'freqs'")
    return ContextTable(tensors["freqs"])


class ArithmeticEncoder:
    """Codes symbols one at a time; take() hands over the bytes settled so far (for
    streaming), finish() the rest. `steps` counts the renormalisations, one output bit each."""

    def __init__(self):
        self.low, self.high, self.pending = 0, _TOP, 0
        self.out = bytearray()
        self.acc, self.nbits = 0, 0

    def _bit(self, bit: int) -> None:
        self.acc = (self.acc << 1) | bit
        self.nbits += 1
        if self.nbits == 8:
            self.out.append(self.acc)
            self.acc, self.nbits = 0, 0

    def _emit(self, bit: int) -> None:
        self._bit(bit)
        for _ in range(self.pending):
            self._bit(1 - bit)
        self.pending = 0

    def encode(self, low: int, high: int, total: int = TOTAL) -> None:
        """Code the symbol whose cumulative frequencies are [low, high) of total."""
        span = self.high - self.low + 1
        self.high = self.low + span * high // total - 1
        self.low = self.low + span * low // total
        while True:
            if self.high < _HALF:
                self._emit(0)
            elif self.low >= _HALF:
                self._emit(1)
                self.low -= _HALF
                self.high -= _HALF
            elif self.low >= _QUARTER and self.high < _HALF + _QUARTER:
                self.pending += 1
                self.low -= _QUARTER
                self.high -= _QUARTER
            else:
                return
            self.low = 2 * self.low
            self.high = 2 * self.high + 1

    def take(self) -> bytes:
        out, self.out = bytes(self.out), bytearray()
        return out

    def finish(self) -> bytes:
        """Two bits pick a point inside the final interval; zero bits pad the last byte."""
        self.pending += 1
        self._emit(0 if self.low < _QUARTER else 1)
        while self.nbits:
            self._bit(0)
        return self.take()


class ArithmeticDecoder:
    """Reads bytes through `read_byte()` (None at the end of the data: zeros are read in its
    place, as the encoder's padding would be). Tracks how many bytes the encoder must have
    written, so the caller can tell truncated data from trailing data."""

    def __init__(self, read_byte: Callable[[], int | None]):
        self.read_byte = read_byte
        self.real_bytes = 0  # bytes actually read
        self.ended = False  # read_byte has returned None
        self.low, self.high, self.value = 0, _TOP, 0
        self.steps = 0
        self.acc, self.nbits = 0, 0
        for _ in range(_BITS):
            self.value = (self.value << 1) | self._bit()

    def _bit(self) -> int:
        if self.nbits == 0:
            byte = None if self.ended else self.read_byte()
            if byte is None:
                self.ended, byte = True, 0
            else:
                self.real_bytes += 1
            self.acc, self.nbits = byte, 8
        self.nbits -= 1
        return (self.acc >> self.nbits) & 1

    @property
    def coded_bytes(self) -> int:
        """Bytes the encoder wrote if the stream ended here: one bit a step, two to finish."""
        return -(-(self.steps + 2) // 8)

    def decode(self, cumulative: np.ndarray) -> int:
        """The next symbol, given its row of cumulative frequencies (cumulative[-1] = total)."""
        total = int(cumulative[-1])
        span = self.high - self.low + 1
        target = ((self.value - self.low + 1) * total - 1) // span
        symbol = int(np.searchsorted(cumulative, target, side="right")) - 1
        low, high = int(cumulative[symbol]), int(cumulative[symbol + 1])
        self.high = self.low + span * high // total - 1
        self.low = self.low + span * low // total
        while True:
            if self.high < _HALF:
                pass
            elif self.low >= _HALF:
                self.low -= _HALF
                self.high -= _HALF
                self.value -= _HALF
            elif self.low >= _QUARTER and self.high < _HALF + _QUARTER:
                self.low -= _QUARTER
                self.high -= _QUARTER
                self.value -= _QUARTER
            else:
                break
            self.low = 2 * self.low
            self.high = 2 * self.high + 1
            self.value = 2 * self.value + self._bit()
            self.steps += 1
        if self.ended and self.coded_bytes > self.real_bytes:
            raise EntropyFormatError("truncated")
        return symbol


class FrameCoder:
    """Frame indices <-> arithmetic-coded bytes with a context table, a frame at a time;
    an end mark closes the sequence, so the bytes need no length."""

    def __init__(self, table: ContextTable):
        self.table = table
        self.encoder = ArithmeticEncoder()
        self.before = table.end  # the start context

    def push(self, indices) -> bytes:
        for index in indices:
            index = int(index)
            if not 0 <= index < self.table.codebook_size:
                raise ValueError(f"frame index {index} out of range")
            self.encoder.encode(*self.table.bounds(self.before, index))
            self.before = index
        return self.encoder.take()

    def finish(self) -> bytes:
        self.encoder.encode(*self.table.bounds(self.before, self.table.end))
        return self.encoder.finish()


class FrameDecoder:
    """The receiving end of FrameCoder: next() gives a frame index, or None at the end mark
    (after which `coded_bytes` is the exact length the encoder wrote)."""

    def __init__(self, table: ContextTable, read_byte: Callable[[], int | None]):
        self.table = table
        self.decoder = ArithmeticDecoder(read_byte)
        self.before = table.end
        self.done = False

    def next(self) -> int | None:
        if self.done:
            return None
        symbol = self.decoder.decode(self.table.cumulative[self.before])
        if symbol == self.table.end:
            self.done = True
            return None
        self.before = symbol
        return symbol

    @property
    def coded_bytes(self) -> int:
        return self.decoder.coded_bytes

    @property
    def real_bytes(self) -> int:
        return self.decoder.real_bytes


def encode_frames(indices, table: ContextTable) -> bytes:
    coder = FrameCoder(table)
    return coder.push(indices) + coder.finish()


def decode_frames(data: bytes, table: ContextTable) -> list[int]:
    """Bytes of exactly one coded sequence -> its frame indices; any defect is an
    EntropyFormatError."""
    stream = iter(data)
    decoder = FrameDecoder(table, lambda: next(stream, None))
    out = []
    while (index := decoder.next()) is not None:
        out.append(index)
    if decoder.real_bytes < decoder.coded_bytes:
        raise EntropyFormatError("truncated")
    if decoder.real_bytes > decoder.coded_bytes or next(stream, None) is not None:
        raise EntropyFormatError("data after the end mark")
    return out
