"""Audio in and out a block at a time, so hours of audio (or an endless pipe) run in
memory that does not grow with length.

Input: a seekable file goes through soundfile (any format it reads); stdin is parsed as a
WAV stream (RIFF header, then PCM or float samples as they arrive; a data size of 0 or
0xFFFFFFFF means "until the end", as sox writes to pipes). Other formats on stdin are read
whole, then decoded, which is fine for short clips. Resampling is soxr's streaming
resampler, whose output does not depend on how the input is split, so a file and a pipe
of the same audio give the same codes.
"""
from __future__ import annotations

import shutil
import struct
import tempfile
from typing import BinaryIO, Iterable, Iterator

import numpy as np
import soundfile as sf
import soxr

from .audio import AudioError, libsndfile_message, pcm16

BLOCK = 1 << 16  # input frames per block


class AudioReader:
    """Blocks of mono float32 samples at the source's rate; `.rate` is known up front,
    `.seconds` when the source says how long it is."""

    rate: int
    seconds: float | None = None

    def blocks(self) -> Iterator[np.ndarray]:
        raise NotImplementedError


class SoundFileReader(AudioReader):
    def __init__(self, path: str):
        try:
            open(path, "rb").close()  # OSError says what is wrong; libsndfile only "System error"
            self.file = sf.SoundFile(path)
        except OSError as err:
            raise AudioError(f"cannot read ({err.strerror or err})") from None
        except (sf.LibsndfileError, RuntimeError, TypeError) as err:
            raise AudioError(f"cannot read audio: {libsndfile_message(err)}") from None
        self.rate = self.file.samplerate
        self.seconds = self.file.frames / self.rate if self.file.frames > 0 else None

    def blocks(self) -> Iterator[np.ndarray]:
        with self.file:
            while True:
                try:
                    block = self.file.read(BLOCK, dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError) as err:
                    raise AudioError(f"cannot read audio: {libsndfile_message(err)}") from None
                if not len(block):
                    return
                yield block.mean(axis=1)


class WavStreamReader(AudioReader):
    """Minimal RIFF/WAVE parser for non-seekable input: PCM 8/16/24/32 and float 32/64."""

    def __init__(self, source: BinaryIO, head: bytes):
        self.source = source
        self._buffer = head
        riff = self._take(12)
        if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            raise AudioError("cannot read audio: not a WAV stream")
        fmt = None
        while True:
            chunk = self._take(8)
            if len(chunk) < 8:
                raise AudioError("cannot read audio: WAV stream ends before its data")
            tag, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if tag == b"fmt ":
                fmt = self._take(size + (size & 1))
                if len(fmt) < 16:
                    raise AudioError("cannot read audio: truncated WAV format chunk")
            elif tag == b"data":
                self.remaining = None if size in (0, 0xFFFFFFFF) else size
                break
            else:
                self._take(size + (size & 1))
        if fmt is None:
            raise AudioError("cannot read audio: WAV stream has no format chunk")
        code, self.channels, self.rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
        if code == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: real code in the GUID
            code = struct.unpack("<H", fmt[24:26])[0]
        kinds = {(1, 8): "u1", (1, 16): "<i2", (1, 24): "i3", (1, 32): "<i4",
                 (3, 32): "<f4", (3, 64): "<f8"}
        if (code, bits) not in kinds or self.channels < 1 or self.rate < 1:
            raise AudioError(f"cannot read audio: unsupported WAV encoding (format {code}, {bits} bit)")
        self.kind, self.width = kinds[(code, bits)], bits // 8

    def _take(self, count: int) -> bytes:
        out, self._buffer = self._buffer[:count], self._buffer[count:]
        while len(out) < count:
            piece = self.source.read(count - len(out))
            if not piece:
                break
            out += piece
        return out

    def _to_float(self, data: bytes) -> np.ndarray:
        if self.kind == "u1":
            x = (np.frombuffer(data, np.uint8).astype(np.float32) - 128) / 128
        elif self.kind == "i3":
            b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
            x = ((b[:, 0] << 8 | b[:, 1] << 16 | b[:, 2] << 24) >> 8).astype(np.float32) / 2 ** 23
        elif self.kind[1] == "i":
            x = np.frombuffer(data, self.kind).astype(np.float32) / 2 ** (8 * self.width - 1)
        else:
            x = np.frombuffer(data, self.kind).astype(np.float32)
        return x.reshape(-1, self.channels).mean(axis=1)

    def blocks(self) -> Iterator[np.ndarray]:
        frame = self.width * self.channels
        while self.remaining is None or self.remaining > 0:
            want = BLOCK * frame if self.remaining is None else min(BLOCK * frame, self.remaining)
            data = self._take(want)
            if self.remaining is not None:
                self.remaining -= len(data)
            data = data[:len(data) // frame * frame]
            if not data:
                return
            yield self._to_float(data)


# Names of the audio files a directory encode picks up: libsndfile's formats (MP3 and Ogg
# Opus included) under their usual suffixes. A single file is tried whatever its name.
AUDIO_SUFFIXES = frozenset({
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au",
    ".snd", ".caf", ".w64", ".rf64", ".sph", ".nist", ".voc", ".htk", ".paf", ".svx", ".8svx",
    ".sd2", ".ircam", ".sf", ".avr", ".wve", ".xi", ".mpc", ".pvf", ".sds"})


def open_audio(source: str | BinaryIO) -> AudioReader:
    """A reader for a path, or for a binary stream (stdin) parsed as it arrives."""
    if isinstance(source, str):
        return SoundFileReader(source)
    head = source.read(12)
    if head[:4] == b"RIFF":
        return WavStreamReader(source, head)
    # FLAC, Ogg, ... on a pipe: spooled to a temporary file that libsndfile reads itself.
    # Not through soundfile's Python read callbacks: a Ctrl-C or SIGTERM raised inside one
    # of those is swallowed by cffi, and the input would end early without an error.
    spool = tempfile.NamedTemporaryFile(prefix="claricodec-stdin-")
    spool.write(head)
    shutil.copyfileobj(source, spool)
    spool.flush()
    reader = SoundFileReader(spool.name)
    reader.spool = spool  # deleted when the reader goes
    return reader


def resample_stream(blocks: Iterable[np.ndarray], rate_in: int, rate_out: int) -> Iterator[np.ndarray]:
    """Blocks at rate_in -> blocks at rate_out (soxr's streaming resampler, HQ: the output
    does not depend on how the input is split)."""
    if rate_in == rate_out:
        yield from blocks
        return
    stream = soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality="HQ")
    for block in blocks:
        yield stream.resample_chunk(block, last=False)
    yield stream.resample_chunk(np.zeros(0, np.float32), last=True)


def resampled_blocks(reader: AudioReader, rate_out: int) -> Iterator[np.ndarray]:
    """The reader's blocks at rate_out; NaN/inf refused."""
    def checked():
        for block in reader.blocks():
            if not np.all(np.isfinite(block)):
                raise AudioError("audio contains NaN or infinite samples")
            yield block
    return resample_stream(checked(), reader.rate, rate_out)


class _ExactLengthWriter:
    """Mono float samples written as they arrive; with num_samples given, exactly that
    many are written (cut or zero-padded), so a length announced up front stays true."""

    def __init__(self, num_samples: int | None):
        self.length, self.written = num_samples, 0

    def write(self, audio: np.ndarray) -> None:
        if self.length is not None:
            audio = audio[:max(0, self.length - self.written)]
        self._put(np.asarray(audio))
        self.written += len(audio)

    def close(self) -> None:
        if self.length is not None and self.written < self.length:
            self.write(np.zeros(self.length - self.written, np.float32))
        self._finish()

    def _put(self, audio: np.ndarray) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError


class WavWriter(_ExactLengthWriter):
    """16-bit PCM mono WAV written as samples arrive. With the length unknown up front the
    sizes say 0xFFFFFFFF ("until the end", as sox writes); a seekable target gets the
    real sizes patched in at close."""

    def __init__(self, target: BinaryIO, rate: int, num_samples: int | None = None):
        super().__init__(num_samples)
        self.target, self.rate = target, rate
        self.target.write(self._header(None if num_samples is None else 2 * num_samples))

    def _header(self, data_size: int | None) -> bytes:
        data = 0xFFFFFFFF if data_size is None else data_size
        riff = 0xFFFFFFFF if data_size is None else 36 + data_size
        fmt = struct.pack("<HHIIHH", 1, 1, self.rate, 2 * self.rate, 2, 16)  # PCM, mono, 16 bit
        return (b"RIFF" + struct.pack("<I", riff) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
                + fmt + b"data" + struct.pack("<I", data))

    def _put(self, audio: np.ndarray) -> None:
        self.target.write(pcm16(audio).tobytes())

    def _finish(self) -> None:
        try:
            seekable = self.target.seekable()
        except (AttributeError, OSError):
            seekable = False
        if seekable:
            self.target.seek(0)
            self.target.write(self._header(2 * self.written))
        self.target.flush()


# Compressed formats decode can write besides WAV, by the output's suffix. libsndfile
# needs a seekable target for them, so they are for files, not stdout.
COMPRESSED_OUTPUTS = {".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}


class CompressedWriter(_ExactLengthWriter):
    """FLAC or Ogg Vorbis (COMPRESSED_OUTPUTS) through libsndfile, written as samples arrive."""

    def __init__(self, target: BinaryIO, suffix: str, rate: int, num_samples: int | None = None):
        super().__init__(num_samples)
        container, subtype = COMPRESSED_OUTPUTS[suffix]
        self.file = sf.SoundFile(target, "w", rate, 1, subtype, format=container)

    def _put(self, audio: np.ndarray) -> None:
        self.file.write(pcm16(audio))  # the very samples a WAV gets

    def _finish(self) -> None:
        self.file.close()  # flushes the encoder; the target itself stays open
