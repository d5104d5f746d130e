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
    # Large sample counts (multi-byte varints) with a short or empty payload.
    for num_samples in (2 ** 35 - 1, 57_600_000):
        h = Header(mode=1, model_id=b"\0\0\0\0", num_samples=num_samples)
        corpus.append(encode_header(h) + bytes(rng.randrange(256) for _ in range(40)))
    return corpus


CORPUS = _corpus()
POS = st.integers(0, 2 ** 16)

MUTATION = st.one_of(
    st.tuples(st.just("flip"), POS, st.integers(0, 7)),
    st.tuples(st.just("set"), POS, st.integers(0, 255)),
    st.tuples(st.just("insert"), POS, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), POS, st.integers(1, 30)),
    st.tuples(st.just("truncate"), POS),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=30)),
    st.tuples(st.just("splice"), st.integers(0, len(CORPUS) - 1), POS, POS),
    st.tuples(st.just("garbage"), st.binary(max_size=64)),
    st.tuples(st.just("garbage_payload"), POS, st.binary(max_size=64)),
)


def _mutate(data: bytes, op: tuple) -> bytes:
    kind, args = op[0], op[1:]
    n = len(data)
    if kind == "flip":
        if not n:
            return data
        at = args[0] % n
        return data[:at] + bytes([data[at] ^ 1 << args[1]]) + data[at + 1:]
    if kind == "set":
        if not n:
            return data
        at = args[0] % n
        return data[:at] + bytes([args[1]]) + data[at + 1:]
    if kind == "insert":
        at = args[0] % (n + 1)
        return data[:at] + args[1] + data[at:]
    if kind == "delete":
        at = args[0] % (n + 1)
        return data[:at] + data[at + args[1]:]
    if kind == "truncate":
        return data[:args[0] % (n + 1)]
    if kind == "append":
        return data + args[0]
    if kind == "splice":  # a prefix of this stream, then a suffix of another
        other = CORPUS[args[0]]
        return data[:args[1] % (n + 1)] + other[args[2] % (len(other) + 1):]
    if kind == "garbage":
        return args[0]
    if kind == "garbage_payload":  # keep a prefix (usually the header), then garbage
        return data[:args[0] % (n + 1)] + args[1]
    raise AssertionError(kind)


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
    @given(st.integers(0, len(CORPUS) - 1), st.lists(MUTATION, min_size=1, max_size=4),
           st.booleans())
    def fuzz(source, mutations, fix_crc):
        nonlocal cases
        cases += 1
        data = CORPUS[source]
        for op in mutations:
            data = _mutate(data, op)
        if fix_crc:
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

    fuzz()
    assert cases >= MAX_EXAMPLES
