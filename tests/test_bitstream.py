"""Behaviour tests for the .cc bitstream, format version 1 (docs/bitstream.md).

Expected sizes and bytes below are worked out by hand from the documented layout, and
CRCs are checked against an independent reference (polynomial long division), so these
tests do not just compare the writer with itself.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claricodec.bitstream import (
    FormatError, Header, crc8, decode_header, encode_header, pack_frames, read_raw,
    read_stream, unpack_frames, write_raw, write_stream,
)
from claricodec.modes import Mode, get_mode

HOP = 640  # mode 1: 16 kHz / 25 frames per second
MODEL = bytes.fromhex("01020304")


def ref_crc8(data: bytes) -> int:
    """CRC-8/SMBUS by long division: remainder of data(x) * x^8 mod x^8 + x^2 + x + 1."""
    value, poly = int.from_bytes(data, "big") << 8, 0x107
    for bit in range(len(data) * 8 + 7, 7, -1):
        if value >> bit & 1:
            value ^= poly << (bit - 8)
    return value


def header(num_samples: int = 0, block_crc: bool = False, model_id: bytes = MODEL) -> Header:
    return Header(mode=1, model_id=model_id, num_samples=num_samples, block_crc=block_crc)


def with_header_crc(body: bytes) -> bytes:
    """A header body (everything before the CRC byte) plus its correct CRC."""
    return body + bytes([ref_crc8(body)])


def format_error(data: bytes, **kwargs) -> str:
    with pytest.raises(FormatError) as info:
        read_stream(data, **kwargs)
    message = str(info.value)
    assert message and "\n" not in message, f"not a one-line message: {message!r}"
    return message


# --- CRC-8 ---------------------------------------------------------------------------

def test_crc8_check_value():
    assert crc8(b"123456789") == 0xF4  # CRC-8/SMBUS catalogue check value
    assert ref_crc8(b"123456789") == 0xF4
    assert crc8(b"") == 0x00
    assert crc8(b"\x01") == 0x07  # the polynomial itself


@given(st.binary(max_size=64))
def test_crc8_matches_reference(data):
    assert crc8(data) == ref_crc8(data)


# --- round trips ---------------------------------------------------------------------

@st.composite
def streams(draw):
    indices = draw(st.lists(st.integers(0, 255), max_size=300))
    model_id = draw(st.binary(min_size=4, max_size=4))
    block_crc = draw(st.booleans())
    known = draw(st.booleans()) and len(indices) > 0
    if known:  # any count with ceil(num_samples / 640) == len(indices)
        n = len(indices)
        num_samples = draw(st.integers((n - 1) * HOP + 1, n * HOP))
    else:
        num_samples = 0
    return header(num_samples, block_crc, model_id), indices


@given(streams())
@settings(max_examples=200, deadline=None)
def test_round_trip(stream):
    h, indices = stream
    data = write_stream(h, indices)
    parsed = read_stream(data)
    assert parsed.header == h
    assert parsed.indices == indices
    assert parsed.bad_frames == []
    assert read_stream(data, tolerate_crc_errors=True) == parsed
    assert decode_header(data) == (h, len(encode_header(h)))


@given(st.lists(st.integers(0, 255), max_size=300))
def test_raw_round_trip(indices):
    data = write_raw(indices, 1)
    assert data == bytes(indices)  # mode 1 raw: exactly one byte per frame, nothing else
    assert read_raw(data, 1) == indices


def test_largest_sample_count_round_trips():
    h = header(num_samples=2 ** 35 - 1)
    encoded = encode_header(h)
    assert encoded[8:13] == b"\xff\xff\xff\xff\x7f"  # five varint bytes
    assert decode_header(encoded) == (h, 14)


@pytest.mark.parametrize("bad", [
    dict(num_samples=2 ** 35), dict(num_samples=-1), dict(model_id=b"abc"), dict(mode=3),
])
def test_writer_refuses_unencodable_headers(bad):
    fields = dict(mode=1, model_id=MODEL, num_samples=640) | bad
    with pytest.raises(ValueError):
        encode_header(Header(**fields))


def test_writer_refuses_wrong_frame_count_and_out_of_range_index():
    with pytest.raises(ValueError):
        write_stream(header(64000), [0] * 99)  # header says 100 frames
    with pytest.raises(ValueError):
        write_stream(header(0), [256])
    with pytest.raises(ValueError):
        write_raw([-1], 1)


# --- exact sizes ---------------------------------------------------------------------

@pytest.mark.parametrize("num_samples, frames, block_crc, size", [
    # header = 2 magic + 1 version|mode + 1 flags + 4 model id + varint + 1 CRC
    (64000, 100, False, 12 + 100),          # varint 64000 = 80 f4 03 (3 bytes)
    (64000, 100, True, 12 + 100 + 4),       # 4 blocks of 25 frames, one CRC byte each
    (64001, 101, True, 12 + 101 + 5),       # a fifth, 1-frame block still gets a CRC
    (16000, 25, False, 11 + 25),            # varint 16000 = 80 7d (2 bytes)
    (16000, 25, True, 11 + 25 + 1),
    (1, 1, False, 10 + 1),                  # varint 1 = 01
    (1, 1, True, 10 + 1 + 1),
    (0, 0, False, 10),                      # unknown length, empty: header alone
    (0, 0, True, 10),                       # no frames, no blocks, no CRC bytes
    (0, 50, True, 10 + 50 + 2),
    (57_600_000, 90_000, False, 13 + 90_000),       # one hour; varint is 4 bytes
    (57_600_000, 90_000, True, 13 + 90_000 + 3600),
])
def test_exact_file_size(num_samples, frames, block_crc, size):
    data = write_stream(header(num_samples, block_crc), [7] * frames)
    assert len(data) == size


def test_payload_is_200_bits_per_second():
    mode = get_mode(1)
    assert mode.bit_rate == 200.0
    assert mode.bits_per_frame == 8 and mode.frame_rate == 25.0
    one_second = write_stream(header(0), [0] * 25)
    assert (len(one_second) - 10) * 8 == 200
    with_crc = write_stream(header(0, block_crc=True), [0] * 25)
    assert (len(with_crc) - 10) * 8 == 208  # --crc adds 8 bit/s


# --- golden bytes --------------------------------------------------------------------

def test_golden_header_4_seconds():
    # 43 43 | 1|1 | 00 | 01 02 03 04 | 64000 = 0xFA00 -> LEB128 80 f4 03 | CRC c7
    golden = bytes.fromhex("4343 11 00 01020304 80f403 c7")
    assert ref_crc8(golden[:-1]) == 0xC7
    assert encode_header(header(64000)) == golden
    assert decode_header(golden) == (header(64000), 12)
    # The same with flag bit 7 (block CRCs): only the flags byte and the CRC change.
    golden_crc = bytes.fromhex("4343 11 80 01020304 80f403 78")
    assert ref_crc8(golden_crc[:-1]) == 0x78
    assert encode_header(header(64000, block_crc=True)) == golden_crc


def test_golden_small_stream():
    # 2 frames (1280 = 0x500 samples -> 80 0a), no CRC; frames 0x00 and 0xff.
    golden = bytes.fromhex("4343 11 00 01020304 800a b7 00ff")
    assert ref_crc8(golden[:10]) == 0xB7
    assert write_stream(header(1280), [0x00, 0xFF]) == golden
    assert read_stream(golden).indices == [0x00, 0xFF]


def test_golden_unknown_length_empty_stream():
    golden = bytes.fromhex("4343 11 00 01020304 00 d3")
    assert ref_crc8(golden[:-1]) == 0xD3
    assert write_stream(header(0), []) == golden


def test_golden_block_crc_stream():
    # 27 frames (17280 samples -> 80 87 01), flag bit 7 set, model a1b2c3d4,
    # frames 0..26: block 0 = 25 bytes 00..18 + CRC, block 1 = 19 1a + CRC.
    golden = bytes.fromhex(
        "4343 11 80 a1b2c3d4 808701 1b"
        "000102030405060708090a0b0c0d0e0f101112131415161718 72"
        "191a ac")
    assert ref_crc8(golden[:11]) == 0x1B
    assert ref_crc8(bytes(range(25))) == 0x72
    assert ref_crc8(b"\x19\x1a") == 0xAC
    h = header(17280, block_crc=True, model_id=bytes.fromhex("a1b2c3d4"))
    assert write_stream(h, list(range(27))) == golden
    assert read_stream(golden).indices == list(range(27))


def test_generic_packing_is_msb_first():
    # A 5-bit mode (27 codes), not in the mode table: the packer must still be exact.
    mode = Mode(id=15, sample_rate=16000, hop=320, levels=(3, 3, 3))
    assert mode.bits_per_frame == 5
    # 00001 00010 11010 + one zero pad bit = 0000 1000 1011 0100
    assert pack_frames([1, 2, 26], mode) == bytes.fromhex("08b4")
    assert unpack_frames(bytes.fromhex("08b4"), mode) == [1, 2, 26]  # 16 bits = 3 frames
    assert unpack_frames(bytes.fromhex("08b4"), mode, 2) == [1, 2]
    with pytest.raises(FormatError):
        unpack_frames(b"\xff\xff", mode)  # 11111 = 31 >= 27
    with pytest.raises(FormatError):
        unpack_frames(b"\x08", mode, 2)  # 8 bits hold one 5-bit frame, not two


@given(st.sampled_from([(2,), (3, 3, 3), (5, 5, 5, 5), (8, 8, 8, 8), (4, 4, 4, 4)]), st.data())
def test_generic_packing_round_trip(levels, data):
    mode = Mode(id=15, sample_rate=16000, hop=640, levels=levels)
    indices = data.draw(st.lists(st.integers(0, mode.codebook_size - 1), max_size=60))
    packed = pack_frames(indices, mode)
    assert len(packed) == -(-len(indices) * mode.bits_per_frame // 8)
    assert unpack_frames(packed, mode, len(indices)) == indices


# --- corruption ----------------------------------------------------------------------

def valid(num_samples: int = 64000, block_crc: bool = False) -> bytes:
    frames = -(-num_samples // HOP) if num_samples else 60
    return write_stream(header(num_samples, block_crc), [i * 37 % 256 for i in range(frames)])


@pytest.mark.parametrize("data", [b"", b"C", b"CD" + valid()[2:], b"cc" + valid()[2:],
                                  b"RIFF\x24\x00\x00\x00WAVE"])
def test_bad_magic(data):
    assert "magic" in format_error(data)


@pytest.mark.parametrize("version", [0, 2, 15])
def test_unknown_version(version):
    data = valid()
    data = with_header_crc(data[:2] + bytes([version << 4 | 1]) + data[3:11]) + data[12:]
    assert "version" in format_error(data)


@pytest.mark.parametrize("mode", [0, 3, 15])
def test_unknown_mode(mode):
    data = valid()
    data = with_header_crc(data[:2] + bytes([0x10 | mode]) + data[3:11]) + data[12:]
    assert "mode" in format_error(data)


@pytest.mark.parametrize("flag_bit", range(6))  # bit 6 is the lead, bit 7 block CRCs
@pytest.mark.parametrize("block_crc", [False, True])
def test_unknown_flag_bits(flag_bit, block_crc):
    data = valid(block_crc=block_crc)
    flags = data[3] | 1 << flag_bit
    data = with_header_crc(data[:3] + bytes([flags]) + data[4:11]) + data[12:]
    assert "flag" in format_error(data)


@pytest.mark.parametrize("position", range(4, 12))  # model id, sample count, the CRC
def test_header_crc_mismatch(position):
    data = bytearray(valid())
    data[position] ^= 0x01
    assert "CRC" in format_error(bytes(data))


@pytest.mark.parametrize("num_samples", [0, 1, 64000, 57_600_000, 2 ** 35 - 1])
@pytest.mark.parametrize("block_crc", [False, True])
def test_truncated_header_every_prefix(num_samples, block_crc):
    full = encode_header(header(num_samples, block_crc))
    for length in range(len(full)):
        with pytest.raises(FormatError) as info:
            decode_header(full[:length])
        message = str(info.value)
        assert "\n" not in message
        assert ("magic" if length < 2 else "truncated") in message, (length, message)
        format_error(full[:length])
    assert decode_header(full)[1] == len(full)


def test_sample_count_longer_than_five_bytes():
    data = with_header_crc(b"CC\x11\x00" + MODEL + b"\x80" * 5 + b"\x01")
    assert "too long" in format_error(data)


@pytest.mark.parametrize("block_crc", [False, True])
def test_truncated_payload(block_crc):
    data = valid(64000, block_crc)
    for cut in (1, 2, 25, len(data) - 12):
        message = format_error(data[:-cut])
        assert "truncated" in message or "CRC" in message, message
    # Without CRCs the message counts the frames that are there.
    assert "99 of 100" in format_error(valid(64000)[:-1])


def test_trailing_data():
    assert "after the last frame" in format_error(valid(64000) + b"\x00")
    assert "after the last frame" in format_error(valid(64000) + valid(64000))


def test_trailing_data_with_block_crc():
    extra = b"\x05" + bytes([ref_crc8(b"\x05")])  # a well-formed extra block
    assert "after the last frame" in format_error(valid(64000, block_crc=True) + extra)
    format_error(valid(64000, block_crc=True) + b"\x05")  # a lone byte: block without CRC


def test_unknown_length_block_without_crc():
    data = write_stream(header(0, block_crc=True), [9] * 50) + b"\x42"  # 2 whole blocks + 1
    assert "without CRC" in format_error(data)


def test_block_crc_mismatch_and_tolerance():
    indices = [i * 37 % 256 for i in range(60)]  # blocks: 0-24, 25-49, 50-59
    data = bytearray(write_stream(header(60 * HOP, block_crc=True), indices))
    second_block = 12 + 26  # header, then block 0 (25 bytes + CRC)
    data[second_block + 3] ^= 0x10  # frame 28
    data = bytes(data)
    assert "CRC mismatch in second 1" in format_error(data)
    stream = read_stream(data, tolerate_crc_errors=True)
    assert stream.bad_frames == list(range(25, 50))
    expected = list(indices)
    expected[28] ^= 0x10  # the damaged frame comes back as stored
    assert stream.indices == expected


def test_tolerated_crc_error_in_crc_byte_and_last_partial_block():
    indices = [i * 37 % 256 for i in range(60)]
    data = bytearray(write_stream(header(60 * HOP, block_crc=True), indices))
    data[12 + 25] ^= 0xFF  # block 0's CRC byte
    data[-1] ^= 0x01  # block 2's CRC byte (frames 50-59)
    stream = read_stream(bytes(data), tolerate_crc_errors=True)
    assert stream.indices == indices
    assert stream.bad_frames == list(range(25)) + list(range(50, 60))


@given(st.integers(1, 300), st.data())
@settings(max_examples=50, deadline=None)
def test_any_single_bit_error_is_caught_by_block_crc(frames, data):
    indices = data.draw(st.lists(st.integers(0, 255), min_size=frames, max_size=frames))
    h = header(frames * HOP, block_crc=True)
    stream = bytearray(write_stream(h, indices))
    offset = len(encode_header(h))  # 11 or 12 bytes, by the varint's length
    bit = data.draw(st.integers(offset * 8, len(stream) * 8 - 1))  # anywhere after it
    stream[bit // 8] ^= 0x80 >> bit % 8
    format_error(bytes(stream))
    block = (bit // 8 - offset) // 26
    parsed = read_stream(bytes(stream), tolerate_crc_errors=True)
    assert parsed.bad_frames == list(range(block * 25, min(frames, block * 25 + 25)))


@given(st.lists(st.integers(0, 255), min_size=1, max_size=300), st.booleans(), st.data())
@settings(max_examples=100, deadline=None)
def test_flipped_payload_bit_changes_exactly_one_frame(indices, known, data):
    num_samples = len(indices) * HOP if known else 0
    stream = bytearray(write_stream(header(num_samples), indices))
    offset = len(encode_header(header(num_samples)))
    bit = data.draw(st.integers(0, len(indices) * 8 - 1))
    stream[offset + bit // 8] ^= 0x80 >> bit % 8  # bits are numbered MSB first
    parsed = read_stream(bytes(stream))
    changed = [i for i, (a, b) in enumerate(zip(parsed.indices, indices)) if a != b]
    assert len(parsed.indices) == len(indices)
    assert changed == [bit // 8]
    assert parsed.indices[bit // 8] == indices[bit // 8] ^ (0x80 >> bit % 8)


def test_unknown_length_prefix_is_a_valid_shorter_stream():
    indices = [i * 37 % 256 for i in range(60)]
    data = write_stream(header(0), indices)
    for cut in range(10, len(data) + 1):
        assert read_stream(data[:cut]).indices == indices[:cut - 10]
    with_crc = write_stream(header(0, block_crc=True), indices)
    assert read_stream(with_crc[:10 + 26]).indices == indices[:25]  # cut at a block end


def test_overlong_sample_count_is_refused():
    """One header has exactly one byte string: a padded varint (0x80 0x00 for 0) is corrupt."""
    from claricodec.bitstream import crc8
    body = b"CC" + bytes([0x11, 0x00]) + b"\x01\x02\x03\x04" + bytes([0x80, 0x00])
    with pytest.raises(FormatError, match="minimally"):
        decode_header(body + bytes([crc8(body)]))
