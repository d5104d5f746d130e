"""The library API: audio in, .cc bytes out, and back.

    import claricodec
    data = claricodec.encode(audio, sample_rate)      # numpy [samples] or [samples, channels]
    audio, rate = claricodec.decode(data)              # float32, 16 kHz mono

Both use the shipped weights (or $CLARICODEC_WEIGHTS), loaded once. For other weights,
an encoder choice, CUDA or streaming (bounded memory, any length), make a ClariCodec
object and use encode_blocks / decode_blocks.
"""
from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import numpy as np

from . import bitstream
from .audio import AudioError, prepare
from .bitstream import FormatError, Header
from .codec import PhraseEncoder, WindowedDecoder, WindowedEncoder
from .modes import get_mode
from .phase import PhasedEncoder, PhaseTally
from .weights import load_codec, load_legacy_decoder


class ClariCodec:
    """A loaded codec: one model, many files."""

    def __init__(self, weights: str | Path | None = None, encoder: str | Path | None = None,
                 device: str = "cpu", search: int = 1, asr: str | Path | None = None,
                 search_judge: str | None = None, search_segment: float | None = None,
                 search_heat: float | None = None,
                 phrases: bool = True, phase_search: bool | int = False):
        """search > 1: encode-time search over that many code sequences per window, judged
        (search_judge="states", the default) by how close Whisper's encoder states of each
        decoded candidate are to the input's, or ("asr", the default when `asr` is given)
        by an ASR's transcripts (`asr`: a faster-whisper model name or path; default
        Whisper tiny.en; needs the [eval] extra). search_segment: seconds; choose per segment
        of that length instead of per 10 s window (more words through, slower). search_heat: the
        draws' temperature as a multiple of the policy's (default: search.HEAT_SEGMENTS with
        segments, else 1). See search.py.
        phrases: cut a signal longer than 10 s into phrases at its pauses and encode each as
        a file of its own (codec.PhraseEncoder); False: fixed 10 s windows, as before
        session 25. A signal of at most 10 s is encoded the same either way.
        phase_search: code each phrase at two frame phases (True; or an int: that many,
        spread over a frame), decode each, and keep the one whose decoded audio Whisper's
        encoder states find closer to the input (phase.py; docs/results.md, "Frame phase").
        Nothing is signalled: any decoder plays the file, the same bits. About 3x the
        encoding time with two phases; not with phrases=False."""
        search_judge = search_judge or ("asr" if asr else "states")
        if search_judge not in ("asr", "states"):
            raise ValueError(f"search_judge must be 'asr' or 'states', not {search_judge!r}")
        if asr and search_judge == "states":
            raise ValueError("asr only matters with search_judge='asr'")
        self.model, self.info = load_codec(weights, encoder, device)
        self.phrases = phrases
        self.phases = int(phase_search) + 1 if isinstance(phase_search, bool) else phase_search
        if self.phases < 1:
            raise ValueError("phase_search must be True, False or a number of phases (1 or more)")
        if self.phases > 1 and not phrases:
            raise ValueError("phase search works phrase by phrase: not with fixed windows")
        self.phase_tally = PhaseTally()  # phrases phase-searched so far, and how many moved
        self.mode = self.model.mode
        self.model_id = bytes.fromhex(self.info["model_id"])
        self._decoders = {self.model_id: self.model}  # model id -> codec that decodes it
        self.search = None
        segment = None
        if search_segment is not None:
            if search_segment <= 0:
                raise ValueError("search_segment must be a positive number of seconds")
            segment = max(1, round(search_segment * self.mode.frame_rate))
        if search > 1 and search_judge == "states":
            from .search import StatesSearch
            self.search = StatesSearch(self.model, candidates=search, segment_frames=segment,
                                       heat=search_heat)
        elif search > 1:
            import torch

            from .asr import ASR
            from .search import ASRSearch
            # The judge runs on the GPU only where CTranslate2 was built with CUDA ("auto").
            judge = ASR(asr, device="cpu" if str(device) == "cpu" else "auto",
                        threads=torch.get_num_threads())
            self.search = ASRSearch(self.model, judge, candidates=search, segment_frames=segment,
                                    heat=search_heat)

    # --- encode --------------------------------------------------------------------------

    def encode_blocks(self, blocks: Iterable[np.ndarray], *, block_crc: bool = False,
                      raw: bool = False, known_length: bool = True, mode: int | None = None
                      ) -> Iterator[bytes]:
        """16 kHz mono float32 blocks -> .cc bytes, in bounded memory.

        known_length=True buffers the codes (25 bytes a second) so the header can carry the
        exact sample count; False streams: the header says "unknown length" and frames
        leave as soon as they are encoded. `mode`: a mode with these weights' codes (1, the
        default: a byte a frame; 2: entropy-coded, fewer bits, no CRC blocks).
        """
        mode = self.check_mode(mode)
        encoder = self._encoder()
        if raw or not known_length:
            writer = bitstream.StreamWriter(self._header(0, block_crc, mode), raw=raw)
            pending_header = writer.start()  # sent with the first frames

            def emit(indices: np.ndarray, last: bool = False) -> bytes:
                nonlocal pending_header
                out = writer.push(indices) + (writer.finish() if last else b"")
                if out or last:
                    out, pending_header = pending_header + out, b""
                return out

            for block in blocks:
                yield emit(encoder.push(block))
            indices = encoder.finish()
            if encoder.total_samples == 0:
                raise AudioError("audio is empty")
            yield emit(indices, last=True)
            return
        parts = [encoder.push(block) for block in blocks]
        parts.append(encoder.finish())
        if encoder.total_samples == 0:
            raise AudioError("audio is empty")
        header = self._header(encoder.total_samples, block_crc, mode)
        yield bitstream.write_stream(header, np.concatenate(parts).tolist())

    def _encoder(self) -> WindowedEncoder:
        """A fresh encoder for one signal: phrase by phrase (at several frame phases with
        phase search), or in fixed windows."""
        if self.phases > 1:
            return PhasedEncoder(self.model, self.search, self.phases, tally=self.phase_tally)
        return (PhraseEncoder if self.phrases else WindowedEncoder)(self.model, self.search)

    def check_mode(self, mode: int | None) -> int:
        """A mode id these weights can write (default: theirs); ValueError otherwise."""
        if mode is None:
            return self.mode.id
        if not get_mode(mode).same_codes(self.mode):
            raise ValueError(f"mode {mode} does not carry these weights' codes (mode {self.mode.id})")
        return mode

    def _header(self, num_samples: int, block_crc: bool, mode: int | None = None) -> Header:
        return Header(mode=self.mode.id if mode is None else mode, model_id=self.model_id,
                      num_samples=num_samples, block_crc=block_crc)

    def encode(self, audio: np.ndarray, sample_rate: int, *, block_crc: bool = False,
               raw: bool = False, mode: int | None = None) -> bytes:
        pcm = prepare(audio, sample_rate, self.mode.sample_rate)
        return b"".join(self.encode_blocks([pcm], block_crc=block_crc, raw=raw, mode=mode))

    # --- decode --------------------------------------------------------------------------

    def open_stream(self, source: BinaryIO, *, raw: bool = False,
                    tolerate_crc_errors: bool = False, mode: int | None = None
                    ) -> tuple[Header, Iterator]:
        """Read a header (checking it was made for these weights); returns it and an
        iterator of (indices, bad frame numbers) chunks. A raw payload has no header: its
        mode is `mode` (default: these weights')."""
        if raw:
            reader = bitstream.StreamReader(source, raw_header=self._header(0, False, self.check_mode(mode)))
            return reader.header, reader.chunks()
        reader = bitstream.StreamReader(source, tolerate_crc_errors=tolerate_crc_errors)
        header = reader.header
        model = self.decoder_for(header.model_id)
        if model is None:
            raise FormatError(f"made for other decoder weights (model id "
                              f"{header.model_id.hex()}, these weights are {self.model_id.hex()})")
        if not get_mode(header.mode).same_codes(model.mode):
            raise FormatError(f"mode {header.mode} stream, but these weights are mode {model.mode.id}")
        return header, reader.chunks()

    def decoder_for(self, model_id: bytes):
        """The codec that decodes files with this model id: these weights, or a decoder of
        earlier weights their manifest keeps (legacy_decoders); None if neither."""
        if model_id not in self._decoders:
            legacy = load_legacy_decoder(self.info["weights_dir"], model_id.hex())
            self._decoders[model_id] = legacy.to(self.model.device) if legacy else None
        return self._decoders[model_id]

    def decode_blocks(self, header: Header, chunks: Iterator, erasures: Iterable[int] = ()
                      ) -> Iterator[np.ndarray]:
        """Chunks from open_stream -> 16 kHz float32 audio blocks, trimmed to the header's
        length. `erasures` are frame numbers to conceal (e.g. known lost on the link)."""
        decoder = WindowedDecoder(self.decoder_for(header.model_id) or self.model)
        erased_frames = np.unique(np.fromiter(erasures, dtype=np.int64))  # sorted
        position, remaining = 0, header.num_samples or None
        skip = header.lead_samples  # the silence session 26's phase search put first

        def trim(audio):
            nonlocal remaining, skip
            dropped = min(skip, len(audio))
            audio, skip = audio[dropped:], skip - dropped
            if remaining is None:
                return audio
            audio = audio[:remaining]
            remaining -= len(audio)
            return audio

        for indices, bad in chunks:
            erased = np.zeros(len(indices), bool)
            first, last = np.searchsorted(erased_frames, [position, position + len(indices)])
            erased[erased_frames[first:last] - position] = True
            erased[np.asarray(bad, dtype=np.int64) - position] = True  # failed block CRCs
            position += len(indices)
            yield trim(decoder.push(indices, erased))
        yield trim(decoder.finish())

    def decode(self, data: bytes, *, raw: bool = False, rate: int | None = None,
               tolerate_crc_errors: bool = False, mode: int | None = None) -> tuple[np.ndarray, int]:
        header, chunks = self.open_stream(io.BytesIO(data), raw=raw, mode=mode,
                                          tolerate_crc_errors=tolerate_crc_errors)
        audio = np.concatenate(list(self.decode_blocks(header, chunks)))
        rate = rate or self.mode.sample_rate
        return prepare(audio, self.mode.sample_rate, rate), rate


@lru_cache(maxsize=1)
def default_codec() -> ClariCodec:
    return ClariCodec()


def encode(audio: np.ndarray, sample_rate: int) -> bytes:
    """Encode audio (any rate, any channel count) to .cc bytes with the shipped weights."""
    return default_codec().encode(audio, sample_rate)


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Decode .cc bytes to (float32 mono audio, 16000)."""
    return default_codec().decode(data)
