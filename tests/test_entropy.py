"""Mode 2: the arithmetic coder, the frozen context table, and entropy-coded .cc streams."""
from __future__ import annotations

import hashlib
import io
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claricodec import entropy
from claricodec.bitstream import FormatError, Header, StreamReader, StreamWriter, read_raw, read_stream, write_raw, write_stream
from claricodec.entropy import (TOTAL, ContextTable, EntropyFormatError, decode_frames, encode_frames,
                                load_table)
from claricodec.modes import get_mode
from claricodec.train.context_table import bits_per_frame, build_table, count_pairs

MODEL = bytes.fromhex("72076fab")


def random_table(size: int, seed: int, skew: float = 3.0) -> ContextTable:
    """A table of `size` codes with uneven rows, as real codes have."""
    rng = np.random.default_rng(seed)
    counts = np.floor(rng.pareto(skew, (size + 1, size + 1)) * 50).astype(np.int64)
    return ContextTable(build_table(counts, prior=4.0))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(2, 40), st.integers(0, 2 ** 32 - 1), st.data())
def test_round_trip_any_sequence(size, seed, data):
    table = random_table(size, seed)
    indices = data.draw(st.lists(st.integers(0, size - 1), max_size=300))
    coded = encode_frames(indices, table)
    assert decode_frames(coded, table) == indices


def test_rate_is_the_tables_cross_entropy_plus_a_few_bits():
    table = random_table(256, 1)
    rng = np.random.default_rng(2)
    # Draw a sequence from the table itself, so it is likely under the model.
    seq, before = [], table.end
    for _ in range(2000):
        p = np.diff(table.cumulative[before])[:-1].astype(np.float64)
        before = int(rng.choice(256, p=p / p.sum()))
        seq.append(before)
    ideal = bits_per_frame([np.array(seq)], table) * len(seq)
    coded_bits = 8 * len(encode_frames(seq, table))
    assert ideal <= coded_bits <= ideal + 2 + 8 + 1  # 2 closing bits, padding, rounding
    assert coded_bits < 8 * len(seq)  # below a byte a frame


def test_no_prefix_decodes_to_the_sequence_and_extensions_are_refused():
    table = random_table(16, 3)
    seq = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4]
    coded = encode_frames(seq, table)
    refused = 0
    for cut in range(len(coded)):
        try:
            assert decode_frames(coded[:cut], table) != seq
        except EntropyFormatError:
            refused += 1
    # A cut can land on a shorter valid sequence (the code is self-delimiting, as any
    # is); a header's frame count catches that (test_mode2_every_truncation_is_refused).
    assert refused >= len(coded) - 3
    for extra in (b"\x00", b"\x80", b"\xff\xff"):
        with pytest.raises(EntropyFormatError):
            decode_frames(coded + extra, table)


def test_table_checks():
    good = build_table(np.ones((5, 5), np.int64), 1.0)
    assert (good.sum(1) == TOTAL).all() and good.min() >= 1
    bad = good.copy()
    bad[0, 0] += 1
    with pytest.raises(ValueError):
        ContextTable(bad)
    zero = good.copy()
    zero[1, 0] += zero[1, 1] - 0
    zero[1, 1] = 0
    with pytest.raises(ValueError):
        ContextTable(zero)


def test_the_frozen_table_is_pinned_and_loaded_strictly(tmp_path, monkeypatch):
    mode = get_mode(2)
    table = load_table(mode.context_table)
    assert table.codebook_size == mode.codebook_size == 256
    path = entropy.table_path(mode.context_table)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entropy.TABLE_SHA256[mode.context_table]
    # One changed byte (a different table) is refused, not silently used.
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    (tmp_path / path.name).write_bytes(bytes(data))
    monkeypatch.setattr(entropy, "TABLE_DIR", tmp_path)
    load_table.cache_clear()
    try:
        with pytest.raises(ValueError, match="not the frozen one"):
            load_table(mode.context_table)
    finally:
        monkeypatch.undo()
        load_table.cache_clear()


def test_the_frozen_table_codes_the_golden_sequence_to_these_bytes():
    # The format's own golden vector: mode 2's bytes for a fixed sequence never change.
    indices = [(37 * i + 11) % 256 for i in range(40)] + [85] * 10
    coded = write_raw(indices, 2)
    assert coded.hex() == GOLDEN_RAW
    assert read_raw(coded, 2) == indices


# docs/bitstream.md quotes it too: a decoder written from the spec must read it back.
GOLDEN_RAW = ("25406327bbddda8b2f82d79a33b96afd3738d3ce7f3e02298db9e5c7"
              "b72e50de5799d833d4af4dcb14eaebc2cd71780ead2909883f3d6700")


@pytest.mark.parametrize("frames", [1, 2, 24, 25, 251, 600])
@pytest.mark.parametrize("known", [True, False])
def test_mode2_stream_round_trip_in_pieces(frames, known):
    rng = np.random.default_rng(frames)
    indices = rng.integers(0, 256, frames).tolist()
    header = Header(mode=2, model_id=MODEL, num_samples=frames * 640 - 3 if known else 0)
    whole = write_stream(header, indices)
    writer = StreamWriter(header)
    pieces = writer.start()
    for i in range(0, frames, 7):
        pieces += writer.push(indices[i:i + 7])
    assert pieces + writer.finish() == whole
    assert read_stream(whole).indices == indices

    class Trickle(io.RawIOBase):  # a pipe that hands over one byte a read
        def __init__(self, data):
            self.data = data

        def read(self, n=-1):
            out, self.data = self.data[:1], self.data[1:]
            return out
    chunks = list(StreamReader(Trickle(whole)).chunks())
    assert [i for chunk, _ in chunks for i in chunk] == indices


def test_mode2_header_frame_count_must_match_the_end_mark():
    indices = list(range(50))
    data = bytearray(write_stream(Header(mode=2, model_id=MODEL, num_samples=50 * 640), indices))
    assert read_stream(bytes(data)).indices == indices
    for frames, message in ((49, "no end mark"), (51, "ends after 50 of 51")):
        other = write_stream(Header(mode=2, model_id=MODEL, num_samples=frames * 640), [0] * frames)
        header_len = len(other) - len(write_raw([0] * frames, 2))
        forged = other[:header_len] + bytes(data[len(data) - len(write_raw(indices, 2)):])
        with pytest.raises(FormatError, match=message):
            read_stream(forged)


def test_mode2_every_truncation_is_refused():
    data = write_stream(Header(mode=2, model_id=MODEL, num_samples=300 * 640), list(range(256)) + [7] * 44)
    for cut in range(len(data)):
        with pytest.raises(FormatError):
            read_stream(data[:cut])


def test_mode2_refuses_crc_blocks_and_trailing_or_missing_bytes():
    with pytest.raises(ValueError, match="CRC"):
        StreamWriter(Header(mode=2, model_id=MODEL, num_samples=640, block_crc=True))
    from claricodec.bitstream import crc8, encode_header
    forged = bytearray(encode_header(Header(mode=2, model_id=MODEL, num_samples=640)))
    forged[3] = 0x80
    forged[-1] = crc8(bytes(forged[:-1]))
    with pytest.raises(FormatError, match="no CRC blocks"):
        read_stream(bytes(forged) + write_raw([1], 2))
    data = write_stream(Header(mode=2, model_id=MODEL, num_samples=0), list(range(30)))
    with pytest.raises(FormatError, match="after the end mark"):
        read_stream(data + b"\x00")
    with pytest.raises(FormatError, match="truncated"):
        read_stream(data[:-1])


def test_shipped_codes_cost_what_the_table_promises():
    """On codes the shipped encoder makes (the hello clip's golden file), mode 2 is smaller
    than mode 1 and within a few bits of the table's cross-entropy."""
    from pathlib import Path
    golden = read_stream((Path(__file__).parent / "golden" / "hello.cc").read_bytes())
    table = load_table("context-v1")
    ideal = bits_per_frame([np.array(golden.indices)], table) * len(golden.indices)
    coded = write_raw(golden.indices, 2)
    assert ideal <= 8 * len(coded) <= ideal + 11
    assert len(coded) < len(golden.indices)


def test_count_pairs_counts_starts_follows_and_ends():
    counts = count_pairs([np.array([1, 2, 2]), np.array([0])], 3)
    assert counts[3, 1] == 1 and counts[3, 0] == 1  # starts
    assert counts[1, 2] == 1 and counts[2, 2] == 1  # follows
    assert counts[2, 3] == 1 and counts[0, 3] == 1  # ends
    assert counts.sum() == 6
    # A sequence the counts favour costs fewer bits than one they do not.
    table = ContextTable(build_table(counts * 100, 1.0))
    assert bits_per_frame([np.array([1, 2, 2])], table) < bits_per_frame([np.array([2, 1, 0])], table)
    assert math.isfinite(bits_per_frame([np.array([0, 0, 0])], table))
