"""The .cc bitstream, version 1: header, payload packing and CRCs.

This module is the whole file format (see docs/bitstream.md) and deliberately imports no
torch, so the parser can be fuzzed and used by tools that never run the model.

Layout, all multi-byte fields big-endian, bits MSB first:

    magic        2 B   b"CC"
    version|mode 1 B   high nibble = format version (1), low nibble = mode id
    flags        1 B   bit 7 = a CRC-8 follows every block of 25 frames; bits 0-6 are zero
    model id     4 B   which decoder weights + quantiser the codes are for
    samples      varint (LEB128) number of 16 kHz output samples; 0 = unknown (a stream)
    header crc   1 B   CRC-8 of all header bytes before it
    payload      frames of mode.bits_per_frame bits, packed MSB first
                 (+ CRC-8 of each block's bytes after it, when flag bit 7 is set)

A headerless raw stream is the payload alone, without block CRCs; both ends agree the
mode and the weights beforehand.
"""
from __future__ import annotations

from dataclasses import dataclass

from bitstring import Array, Bits

from .modes import Mode, get_mode

MAGIC = b"CC"
VERSION = 1
FLAG_BLOCK_CRC = 0x80
BLOCK_FRAMES = 25  # one second of mode-1 frames per CRC block
MAX_VARINT_BYTES = 5  # 2**35 samples is over 24 days of audio


class FormatError(ValueError):
    """The bytes are not a valid .cc stream (or not for this decoder). Message is one line."""


@dataclass(frozen=True)
class Header:
    mode: int
    model_id: bytes  # 4 bytes
    num_samples: int  # 0 = unknown
    block_crc: bool = False
    version: int = VERSION

    @property
    def num_frames(self) -> int | None:
        if self.num_samples == 0:
            return None
        hop = get_mode(self.mode).hop
        return -(-self.num_samples // hop)


def crc8(data: bytes) -> int:
    """CRC-8/SMBUS: polynomial 0x07, init 0, no reflection, no final xor."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def encode_header(header: Header) -> bytes:
    get_mode(header.mode)  # refuses unknown modes
    if len(header.model_id) != 4:
        raise ValueError("model id must be 4 bytes")
    if not 0 <= header.num_samples < 2 ** (7 * MAX_VARINT_BYTES):
        raise ValueError(f"sample count out of range: {header.num_samples}")
    if not (0 <= header.version <= 0xF and 0 <= header.mode <= 0xF):
        raise ValueError("version and mode must each fit in 4 bits")
    fixed = Bits.from_joined([
        Bits.from_bytes(MAGIC),
        Bits.from_dtype("u4", header.version),
        Bits.from_dtype("u4", header.mode),
        Bits.from_dtype("u8", FLAG_BLOCK_CRC if header.block_crc else 0),
        Bits.from_bytes(bytes(header.model_id)),
    ])
    body = fixed.to_bytes() + _encode_varint(header.num_samples)
    return body + bytes([crc8(body)])


def decode_header(data: bytes) -> tuple[Header, int]:
    """Parse a header; returns it and the number of bytes it took."""
    if len(data) < 2 or data[:2] != MAGIC:
        raise FormatError("not a ClariCodec .cc stream (bad magic)")
    if len(data) < 8:
        raise FormatError("truncated .cc header")
    fixed = Bits.from_bytes(bytes(data[:8]))
    version, mode, flags = fixed[16:20].u, fixed[20:24].u, fixed[24:32].u
    model_id = fixed[32:64].to_bytes()
    if version != VERSION:
        raise FormatError(f"unsupported .cc format version {version} (this decoder reads {VERSION})")
    try:
        get_mode(mode)
    except ValueError as err:
        raise FormatError(str(err)) from None
    if flags & ~FLAG_BLOCK_CRC:
        raise FormatError(f"unknown header flags 0x{flags:02x}")
    pos, num_samples, shift = 8, 0, 0
    while True:
        if pos >= len(data):
            raise FormatError("truncated .cc header")
        if pos >= 8 + MAX_VARINT_BYTES:
            raise FormatError("corrupt .cc header (sample count too long)")
        byte = data[pos]
        num_samples |= (byte & 0x7F) << shift
        shift += 7
        pos += 1
        if not byte & 0x80:
            if byte == 0 and pos > 9:  # an over-long varint: one header, one byte string
                raise FormatError("corrupt .cc header (sample count not minimally encoded)")
            break
    if pos >= len(data):
        raise FormatError("truncated .cc header")
    if crc8(data[:pos]) != data[pos]:
        raise FormatError("corrupt .cc header (CRC mismatch)")
    header = Header(mode=mode, model_id=model_id, num_samples=num_samples,
                    block_crc=bool(flags & FLAG_BLOCK_CRC), version=version)
    return header, pos + 1


def pack_frames(indices: list[int], mode: Mode) -> bytes:
    """Frame indices -> payload bytes, MSB first, zero-padded to a whole byte."""
    for i in indices:
        if not 0 <= i < mode.codebook_size:
            raise ValueError(f"frame index {i} out of range for mode {mode.id}")
    return Array(f"u{mode.bits_per_frame}", [int(i) for i in indices]).to_bytes()


def unpack_frames(payload: bytes, mode: Mode, num_frames: int | None = None) -> list[int]:
    """Payload bytes -> frame indices. Without num_frames, every whole frame is read."""
    available = len(payload) * 8 // mode.bits_per_frame
    if num_frames is None:
        num_frames = available
    elif num_frames > available:
        raise FormatError(f"truncated .cc payload ({available} of {num_frames} frames)")
    indices = Array.from_bytes(f"u{mode.bits_per_frame}", bytes(payload)).tolist()[:num_frames]
    if any(i >= mode.codebook_size for i in indices):
        raise FormatError(f"frame index out of range for mode {mode.id}")
    return indices


def _with_block_crcs(payload: bytes, block_bytes: int) -> bytes:
    out = bytearray()
    for start in range(0, len(payload), block_bytes):
        block = payload[start:start + block_bytes]
        out += block + bytes([crc8(block)])
    return bytes(out)


def _block_bytes(mode: Mode) -> int:
    if (BLOCK_FRAMES * mode.bits_per_frame) % 8:
        raise ValueError(f"mode {mode.id}: a CRC block is not a whole number of bytes")
    return BLOCK_FRAMES * mode.bits_per_frame // 8


@dataclass
class Stream:
    """A parsed .cc file: its header, the frame indices and which frames failed a CRC."""
    header: Header
    indices: list[int]
    bad_frames: list[int]  # frames whose CRC block failed (only filled when tolerated)


def write_stream(header: Header, indices: list[int]) -> bytes:
    mode = get_mode(header.mode)
    if header.num_frames is not None and header.num_frames != len(indices):
        raise ValueError(f"header says {header.num_frames} frames, got {len(indices)}")
    payload = pack_frames(indices, mode)
    if header.block_crc:
        payload = _with_block_crcs(payload, _block_bytes(mode))
    return encode_header(header) + payload


def read_stream(data: bytes, *, tolerate_crc_errors: bool = False) -> Stream:
    """Parse a whole .cc file. Raises FormatError on any defect (CRC failures only
    when not tolerated; tolerated ones are listed in Stream.bad_frames)."""
    header, offset = decode_header(data)
    mode = get_mode(header.mode)
    body = data[offset:]
    bad_frames: list[int] = []
    if header.block_crc:
        block_bytes = _block_bytes(mode)
        payload = bytearray()
        for number, start in enumerate(range(0, len(body), block_bytes + 1)):
            chunk = body[start:start + block_bytes + 1]
            if len(chunk) < 2:
                raise FormatError("truncated .cc payload (block without CRC)")
            block, crc = chunk[:-1], chunk[-1]
            if crc8(block) != crc:
                if not tolerate_crc_errors:
                    raise FormatError(f"corrupt .cc payload (CRC mismatch in second {number})")
                first = number * BLOCK_FRAMES
                bad_frames.extend(range(first, first + len(block) * 8 // mode.bits_per_frame))
            payload += block
        payload = bytes(payload)
    else:
        payload = body
    expected = header.num_frames
    if expected is not None:
        expected_bytes = -(-expected * mode.bits_per_frame // 8)
        if len(payload) < expected_bytes:
            raise FormatError(f"truncated .cc payload ({len(payload) * 8 // mode.bits_per_frame}"
                              f" of {expected} frames)")
        if len(payload) > expected_bytes:
            raise FormatError("corrupt .cc payload (data after the last frame)")
    indices = unpack_frames(payload, mode, expected)
    bad_frames = [f for f in bad_frames if f < len(indices)]
    return Stream(header=header, indices=indices, bad_frames=bad_frames)


def read_raw(data: bytes, mode_id: int) -> list[int]:
    """A headerless raw stream: the payload alone."""
    return unpack_frames(data, get_mode(mode_id))


def write_raw(indices: list[int], mode_id: int) -> bytes:
    return pack_frames(indices, get_mode(mode_id))


def looks_like_cc(data: bytes) -> bool:
    return data[:2] == MAGIC
