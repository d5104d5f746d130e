"""Fuzz the .cc parser with mutated real streams: the only error it may raise is FormatError.

At least 10,000 cases, derandomized so CI sees the same cases every run. The run time of
this file is the no-hang check (a few seconds; see docs/bitstream.md).
"""
from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claricodec.bitstream import (
    FormatError, Header, crc8, decode_header, encode_header, read_raw, read_stream,
    write_stream,
)

HOP = 640
MAX_EXAMPLES = 10_000


def _corpus() -> list[bytes]:
    """Real, valid streams: every flag and length case, block boundaries included."""
    rng = random.Random(20240501)
    corpus = []
    for frames in (0, 1, 2, 24, 25, 26, 49, 50, 51, 100, 137, 300):
        for block_crc in (False, True):
            for known in (False, True):
                if known and frames == 0:
                    continue
                num_samples = (frames - 1) * HOP + rng.randint(1, HOP) if known else 0
                model_id = bytes(rng.randrange(256) for _ in range(4))
                indices = [rng.randrange(256) for _ in range(frames)]
                h = Header(mode=1, model_id=model_id, num_samples=num_samples,
                           block_crc=block_crc)
                corpus.append(write_stream(h, indices))
                if not block_crc:  # mode 2: the same frames, entropy-coded (no CRC blocks)
                    corpus.append(write_stream(Header(mode=2, model_id=model_id,
                                                      num_samples=num_samples), indices))
    # Large sample counts (multi-byte varints) with a short or empty payload.
    for num_samples in (2 ** 35 - 1, 57_600_000):
        h = Header(mode=1, model_id=b"\0\0\0\0", num_samples=num_samples)
        corpus.append(encode_header(h) + bytes(rng.randrange(256) for _ in range(40)))
    return corpus


CORPUS = _corpus()


def _garbage(rng: random.Random, most: int) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, most)))


def _mutate(data: bytes, rng: random.Random) -> bytes:
    """One random mutation: flip, set, insert, delete, truncate, append, splice, garbage."""
    n = len(data)
    at = rng.randint(0, n)  # a cut point; a byte position when < n
    kind = rng.randrange(9)
    if kind == 0 and n:  # flip one bit
        at %= n
        return data[:at] + bytes([data[at] ^ 1 << rng.randrange(8)]) + data[at + 1:]
    if kind == 1 and n:  # set one byte
        at %= n
        return data[:at] + bytes([rng.randrange(256)]) + data[at + 1:]
    if kind == 2:  # insert bytes
        return data[:at] + _garbage(rng, 8) + data[at:]
    if kind == 3:  # delete bytes
        return data[:at] + data[at + rng.randint(1, 30):]
    if kind == 4:  # truncate
        return data[:at]
    if kind == 5:  # append
        return data + _garbage(rng, 30)
    if kind == 6:  # splice: a prefix of this stream, then a suffix of another
        other = rng.choice(CORPUS)
        return data[:at] + other[rng.randint(0, len(other)):]
    if kind == 7:  # random garbage instead of the stream (or behind a header start)
        return rng.choice((b"", b"CC", b"CC\x11", b"CC\x11\x80")) + _garbage(rng, 64)
    return data[:at] + _garbage(rng, 64)  # keep a prefix (often the header), then garbage


def _fix_header_crc(data: bytes) -> bytes:
    """Rewrite the header CRC so a mutated header field reaches the checks behind it."""
    if len(data) < 9 or data[:2] != b"CC":
        return data
    pos = 8
    while pos < min(len(data), 13) and data[pos] & 0x80:
        pos += 1
    pos += 1
    if pos >= len(data):
        return data
    return data[:pos] + bytes([crc8(data[:pos])]) + data[pos + 1:]


def _parse(data: bytes, tolerate: bool):
    try:
        return read_stream(data, tolerate_crc_errors=tolerate)
    except FormatError as err:
        assert str(err) and "\n" not in str(err)
        return None


def test_fuzz_parser_only_raises_format_error():
    cases = 0

    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(st.integers(0, 2 ** 64 - 1))
    def fuzz(seed):
        # Hypothesis only picks the seed: one draw per case keeps 10,000 cases fast.
        # A failure prints its seed; the case is then random.Random(seed) replayed.
        nonlocal cases
        cases += 1
        rng = random.Random(seed)
        data = rng.choice(CORPUS)
        for _ in range(rng.randint(1, 4)):
            data = _mutate(data, rng)
        if rng.random() < 0.5:
            data = _fix_header_crc(data)

        try:
            header, length = decode_header(data)
        except FormatError as err:
            assert str(err) and "\n" not in str(err)
            header = None
        else:
            assert isinstance(header, Header) and 10 <= length <= min(len(data), 14)
            assert decode_header(encode_header(header))[0] == header

        strict = _parse(data, tolerate=False)
        tolerant = _parse(data, tolerate=True)
        if strict is not None:  # strict success implies the same tolerant success
            assert strict.bad_frames == []
            assert tolerant == strict
        for stream in (strict, tolerant):
            if stream is None:
                continue
            assert header is not None and stream.header == header
            assert all(type(i) is int and 0 <= i <= 255 for i in stream.indices)
            if header.num_frames is not None:
                assert len(stream.indices) == header.num_frames
            assert stream.bad_frames == sorted(set(stream.bad_frames))
            assert all(0 <= f < len(stream.indices) for f in stream.bad_frames)

        assert read_raw(data, 1) == list(data)  # raw mode 1: any bytes are frames
        try:  # raw mode 2: an arithmetic-coded payload, or a one-line FormatError
            frames = read_raw(data, 2)
        except FormatError as err:
            assert str(err) and "\n" not in str(err)
        else:
            assert all(type(i) is int and 0 <= i <= 255 for i in frames)

    fuzz()
    assert cases >= MAX_EXAMPLES
