"""The .cc bitstream, version 1: header, payload packing and CRCs.

This module is the whole file format (see docs/bitstream.md) and deliberately imports no
torch, so the parser can be fuzzed and used by tools that never run the model.

Layout, all multi-byte fields big-endian, bits MSB first:

    magic        2 B   b"CC"
    version|mode 1 B   high nibble = format version (1), low nibble = mode id
    flags        1 B   bit 7 = a CRC-8 follows every block of 25 frames; bit 6 = lead:
                       the frames code half a frame of silence and then the signal, so
                       the decoder drops its first hop / 2 samples; bits 0-5 are zero
    model id     4 B   which decoder weights + quantiser the codes are for
    samples      varint (LEB128) number of 16 kHz output samples; 0 = unknown (a stream)
    header crc   1 B   CRC-8 of all header bytes before it
    payload      frames of mode.bits_per_frame bits, packed MSB first
                 (+ CRC-8 of each block's bytes after it, when flag bit 7 is set);
                 in an entropy-coded mode (2): the frames arithmetic-coded with the
                 mode's context table, then an end mark (entropy.py), no CRC blocks

A headerless raw stream is the payload alone, without block CRCs; both ends agree the
mode and the weights beforehand.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from math import gcd
from typing import BinaryIO, Iterator

from bitstring import Array, Bits

from .entropy import EntropyFormatError, FrameCoder, FrameDecoder, load_table
from .modes import Mode, get_mode

MAGIC = b"CC"
VERSION = 1
FLAG_BLOCK_CRC = 0x80
FLAG_LEAD = 0x40  # half a frame of silence before the signal (session 26's phase search; read, no longer written)
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
    lead: bool = False  # FLAG_LEAD: drop the decoder's first lead_samples

    @property
    def lead_samples(self) -> int:
        """The silence flag bit 6 (lead) says the frames start with: half a frame."""
        return get_mode(self.mode).hop // 2 if self.lead else 0

    @property
    def num_frames(self) -> int | None:
        if self.num_samples == 0:
            return None
        hop = get_mode(self.mode).hop
        return -(-(self.lead_samples + self.num_samples) // hop)


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
        Bits.from_dtype("u8", (FLAG_BLOCK_CRC if header.block_crc else 0) | (FLAG_LEAD if header.lead else 0)),
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
    if flags & ~(FLAG_BLOCK_CRC | FLAG_LEAD):
        raise FormatError(f"unknown header flags 0x{flags:02x}")
    if flags & FLAG_BLOCK_CRC and get_mode(mode).entropy_coded:
        raise FormatError(f"corrupt .cc header (mode {mode} has no CRC blocks)")
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
                    block_crc=bool(flags & FLAG_BLOCK_CRC), version=version,
                    lead=bool(flags & FLAG_LEAD))
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


class StreamWriter:
    """Writes a .cc stream piece by piece: start(), push(indices)..., finish().

    Frames are emitted as soon as they fill whole bytes (whole CRC blocks with block_crc),
    so an encoder can stream to stdout with memory that does not grow.
    """

    def __init__(self, header: Header, raw: bool = False):
        """raw: the payload alone, no header (and so no CRC blocks)."""
        self.header = header
        self.raw = raw
        self.mode = get_mode(header.mode)
        if header.block_crc and (raw or self.mode.entropy_coded):
            raise ValueError("CRC blocks need a header and a fixed-rate mode (mode 1)")
        self.coder = FrameCoder(load_table(self.mode.context_table)) if self.mode.entropy_coded else None
        bits = self.mode.bits_per_frame
        self.group = BLOCK_FRAMES if header.block_crc else 8 // gcd(bits, 8)
        if header.block_crc:
            _block_bytes(self.mode)  # refuses modes whose blocks are not whole bytes
        self.pending: list[int] = []
        self.frames = 0

    def start(self) -> bytes:
        return b"" if self.raw else encode_header(self.header)

    def _emit(self, indices: list[int]) -> bytes:
        payload = pack_frames(indices, self.mode)
        self.frames += len(indices)
        return payload + bytes([crc8(payload)]) if self.header.block_crc and payload else payload

    def push(self, indices) -> bytes:
        if self.coder is not None:
            indices = [int(i) for i in indices]
            self.frames += len(indices)
            return self.coder.push(indices)
        self.pending.extend(int(i) for i in indices)
        whole = len(self.pending) // self.group * self.group
        # With CRCs each block of BLOCK_FRAMES gets its own CRC; without, any whole bytes go.
        step = BLOCK_FRAMES if self.header.block_crc else max(whole, 1)
        out = b"".join(self._emit(self.pending[i:i + step]) for i in range(0, whole, step))
        self.pending = self.pending[whole:]
        return out

    def finish(self) -> bytes:
        if self.coder is not None:
            out = self.coder.finish()
        else:
            out = self._emit(self.pending) if self.pending else b""
        self.pending = []
        expected = self.header.num_frames
        if expected is not None and expected != self.frames:
            raise ValueError(f"header says {expected} frames, got {self.frames}")
        return out


def write_stream(header: Header, indices: list[int]) -> bytes:
    writer = StreamWriter(header)
    return writer.start() + writer.push(indices) + writer.finish()


class StreamReader:
    """Parses a .cc stream from a binary file object, a piece at a time.

    The header is read and checked on construction; chunks() then yields (indices,
    bad_frame_numbers) per CRC block (or per 250 frames without CRCs) as the bytes
    arrive, so a decoder can start before the stream ends. Every defect is a FormatError.
    """

    CHUNK_FRAMES = 250

    def __init__(self, source: BinaryIO, *, tolerate_crc_errors: bool = False,
                 raw_header: Header | None = None):
        """raw_header: the source is a headerless payload, of the mode this header names."""
        self.source = source
        self.tolerate = tolerate_crc_errors
        if raw_header is not None:
            self.header, self._pending = raw_header, b""
        else:
            head = self._read_from_source(8 + MAX_VARINT_BYTES + 1)
            self.header, used = decode_header(head)
            self._pending = head[used:]  # read ahead past the header: start of the payload
        self.mode = get_mode(self.header.mode)
        self.frames_read = 0

    def _read_from_source(self, count: int) -> bytes:
        out = bytearray()
        while len(out) < count:
            piece = self.source.read(count - len(out))
            if not piece:
                break
            out += piece
        return bytes(out)

    def _read(self, count: int) -> bytes:
        take, self._pending = self._pending[:count], self._pending[count:]
        return take + self._read_from_source(count - len(take))

    def _next_byte(self) -> int | None:
        byte = self._read(1)
        return byte[0] if byte else None

    def _coded_chunks(self) -> Iterator[tuple[list[int], list[int]]]:
        """An entropy-coded payload: frames until the end mark, CHUNK_FRAMES at a time."""
        decoder = FrameDecoder(load_table(self.mode.context_table), self._next_byte)
        expected = self.header.num_frames
        chunk: list[int] = []
        while True:
            try:
                index = decoder.next()
            except EntropyFormatError:
                raise FormatError(f"truncated .cc payload (no end mark after "
                                  f"{self.frames_read + len(chunk)} frames)") from None
            if index is None:
                break
            chunk.append(index)
            if expected is not None and self.frames_read + len(chunk) > expected:
                raise FormatError(f"corrupt .cc payload (no end mark after the header's {expected} frames)")
            if len(chunk) == self.CHUNK_FRAMES:
                self.frames_read += len(chunk)
                yield chunk, []
                chunk = []
        got = self.frames_read + len(chunk)
        if expected is not None and got != expected:
            raise FormatError(f"corrupt .cc payload (it ends after {got} of {expected} frames)")
        if decoder.real_bytes > decoder.coded_bytes or self._read(1):
            raise FormatError("corrupt .cc payload (data after the end mark)")
        self.frames_read = got
        if chunk:
            yield chunk, []

    def chunks(self) -> Iterator[tuple[list[int], list[int]]]:
        if self.mode.entropy_coded:
            yield from self._coded_chunks()
            return
        bits, crc = self.mode.bits_per_frame, self.header.block_crc
        unit = BLOCK_FRAMES if crc else self.CHUNK_FRAMES
        expected = self.header.num_frames
        while True:
            want = unit if expected is None else min(unit, expected - self.frames_read)
            if want == 0:
                if self._read(1):
                    raise FormatError("corrupt .cc payload (data after the last frame)")
                return
            want_bytes = -(-want * bits // 8) + (1 if crc else 0)
            chunk = self._read(want_bytes)
            if expected is not None and len(chunk) < want_bytes:
                got = self.frames_read + max(0, len(chunk) - (1 if crc else 0)) * 8 // bits
                raise FormatError(f"truncated .cc payload ({got} of {expected} frames)")
            if not chunk:
                return
            if crc and len(chunk) < 2:
                raise FormatError("truncated .cc payload (block without CRC)")
            block = chunk[:-1] if crc else chunk
            frames = want if expected is not None else len(block) * 8 // bits
            bad: list[int] = []
            if crc and crc8(block) != chunk[-1]:
                if not self.tolerate:
                    raise FormatError(f"corrupt .cc payload (CRC mismatch in second "
                                      f"{self.frames_read // BLOCK_FRAMES})")
                bad = list(range(self.frames_read, self.frames_read + frames))
            indices = unpack_frames(block, self.mode, frames)
            self.frames_read += len(indices)
            yield indices, bad


def read_stream(data: bytes, *, tolerate_crc_errors: bool = False) -> Stream:
    """Parse a whole .cc file. Raises FormatError on any defect (CRC failures only
    when not tolerated; tolerated ones are listed in Stream.bad_frames)."""
    reader = StreamReader(io.BytesIO(bytes(data)), tolerate_crc_errors=tolerate_crc_errors)
    indices: list[int] = []
    bad_frames: list[int] = []
    for chunk, bad in reader.chunks():
        indices += chunk
        bad_frames += bad
    return Stream(header=reader.header, indices=indices, bad_frames=bad_frames)


def _raw_header(mode_id: int) -> Header:
    """What a raw stream's two ends agree on: the mode (the model id travels nowhere)."""
    return Header(mode=mode_id, model_id=bytes(4), num_samples=0)


def read_raw(data: bytes, mode_id: int) -> list[int]:
    """A headerless raw stream: the payload alone."""
    reader = StreamReader(io.BytesIO(bytes(data)), raw_header=_raw_header(mode_id))
    return [i for chunk, _ in reader.chunks() for i in chunk]


def write_raw(indices: list[int], mode_id: int) -> bytes:
    writer = StreamWriter(_raw_header(mode_id), raw=True)
    return writer.push(indices) + writer.finish()
