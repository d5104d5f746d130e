"""The codec model: encoder + quantiser policy + decoder, and how audio is cut into windows.

Codes are defined by analysis windows: every window is WINDOW frames of audio plus CONTEXT
frames on each side, encoded alone with batch size 1. WindowedEncoder cuts fixed windows
(real audio as context, zeros before the start and after the end); PhraseEncoder, what
files are encoded with since session 25, encodes a signal over one window phrase by
phrase, each phrase in zeros as a file of its own. Either way every window has the same
shape and the cuts depend only on the signal, so a file, a pipe or any read size produce
the same codes, in memory that does not grow with the input's length.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from .decoder import Decoder
from .encoder import Encoder
from .modes import Mode, get_mode
from .quantizer import FSQPolicy

WINDOW = 250  # frames (10 s) of codes per encoder window
CONTEXT = 25  # frames (1 s) of context on each side
# A trimmed Whisper front (CodecConfig.front_window) hears this many frames of zeros after
# the signal instead of the rest of the 12 s window, as it hears CONTEXT before it.
TRIMMED_AFTER = CONTEXT
DECODE_CONTEXT = 16  # frames on each side when decoding in windows (receptive field ~11)


@dataclass
class CodecConfig:
    mode: int = 1
    encoder_dim: int = 192
    encoder_depths: tuple[int, int, int] = (2, 2, 4)
    decoder_dim: int = 256
    decoder_depths: tuple[int, int] = (2, 6)
    n_mels: int = 80
    # "mel": the ConvNeXt encoder on log-mel (encoder.py). "whisper": frozen Whisper
    # tiny.en states + a trainable head of `front_depth` blocks (whisper_front.py).
    front: str = "mel"
    front_depth: int = 4
    # Whisper front only: what Whisper hears around a phrase. "full": the whole 12 s
    # analysis window, the phrase padded with zeros (every head until session 30); "trimmed":
    # the phrase and 1 s of zeros each side, about twice as fast for a short file or phrase
    # (the shipped head since session 31). A head is trained for one: a full-window head
    # distilled onto trimmed windows lost ~2 points of WER (docs/training.md, session 30).
    front_window: str = "full"
    temperature: float = 1.0  # policy temperature, calibrated at the end of stage 1

    @classmethod
    def from_dict(cls, data: dict) -> "CodecConfig":
        known = {f for f in cls.__dataclass_fields__}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> "CodecConfig":
        """Raise ValueError for a mode, front or front window this code does not know."""
        get_mode(self.mode)
        if self.front not in ("mel", "whisper"):
            raise ValueError(f"unknown encoder front {self.front!r} (known: mel, whisper)")
        front_trimmed(self.front_window)
        return self


def build_encoder(config: CodecConfig) -> nn.Module:
    mode = get_mode(config.check().mode)
    if config.front == "whisper":
        from .whisper_front import WhisperFrontEncoder
        return WhisperFrontEncoder(config.encoder_dim, len(mode.levels), config.front_depth,
                                   trimmed=front_trimmed(config.front_window))
    return Encoder(config.encoder_dim, len(mode.levels), config.n_mels, config.encoder_depths,
                   mode.sample_rate)


def front_trimmed(front_window: str) -> bool:
    """CodecConfig.front_window -> whether Whisper hears a trimmed window."""
    if front_window not in ("full", "trimmed"):
        raise ValueError(f"unknown front window {front_window!r} (known: full, trimmed)")
    return front_window == "trimmed"


def build_decoder(config: CodecConfig) -> Decoder:
    return Decoder(len(get_mode(config.mode).levels), config.decoder_dim, config.decoder_depths)


class Codec(nn.Module):
    def __init__(self, config: CodecConfig, encoder: Encoder | None = None,
                 decoder: Decoder | None = None):
        super().__init__()
        self.config = config
        self.mode: Mode = get_mode(config.mode)
        self.encoder = encoder if encoder is not None else build_encoder(config)
        self.quantizer = FSQPolicy(self.mode.levels, config.temperature)
        self.decoder = decoder if decoder is not None else build_decoder(config)
        # The code whose run the decoder renders quietest (weights' manifest; None: send
        # silent phrases like any other). Set by weights.load_codec; see PhraseEncoder.
        self.silence_code: int | None = None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # --- inference: numpy in, numpy out -------------------------------------------------

    def num_frames(self, num_samples: int) -> int:
        return -(-num_samples // self.mode.hop)

    @torch.inference_mode()
    def window_latent(self, window_audio: np.ndarray, span: tuple[int, int] | None = None
                      ) -> torch.Tensor:
        """One analysis window, (CONTEXT + WINDOW + CONTEXT) * hop samples -> the bounded
        latent z [1, D, WINDOW] of its WINDOW centre frames.

        `span`: the frames (first, end) of the window that hold the signal, the rest being
        the zeros before its start or after its end. A Whisper-front head reads only those
        frames' states: training gives it an utterance's own frames (its convolutions pad
        them with zeros), never Whisper's states of the silence around them, which moved
        ~8 % of a short file's codes, all near its ends. Frames outside the span get z = 0.
        A head with a trimmed front (CodecConfig.front_window) has Whisper hear the window
        only up to TRIMMED_AFTER frames after the span."""
        x = torch.from_numpy(np.ascontiguousarray(window_audio, dtype=np.float32))
        x = x.unsqueeze(0).to(self.device)
        if span is None or not getattr(self.encoder, "reads_features", False):
            z = self.quantizer.bound(self.encoder(x))
        else:
            first, end = span
            if getattr(self.encoder, "trimmed", False):  # Whisper hears TRIMMED_AFTER frames past the signal
                x = x[:, :(end + TRIMMED_AFTER) * self.mode.hop]
            features = self.encoder.features(x)
            z = features.new_zeros(1, len(self.mode.levels), features.shape[-1])
            z[:, :, first:end] = self.quantizer.bound(self.encoder.from_features(features[:, :, first:end]))
        return z[:, :, CONTEXT:CONTEXT + WINDOW]

    def encode_window(self, window_audio: np.ndarray, span: tuple[int, int] | None = None
                      ) -> np.ndarray:
        """One analysis window -> WINDOW indices (the argmax path)."""
        z = self.window_latent(window_audio, span)
        return self.quantizer.to_index(self.quantizer.argmax(z))[0].cpu().numpy().astype(np.int64)

    def encode(self, audio: np.ndarray) -> np.ndarray:
        """Whole 16 kHz mono float32 signal -> frame indices (see WindowedEncoder)."""
        stream = WindowedEncoder(self)
        return np.concatenate([stream.push(audio), stream.finish()])

    @torch.inference_mode()
    def decode_window(self, indices: np.ndarray) -> np.ndarray:
        k = self.quantizer.from_index(torch.from_numpy(indices)[None].to(self.device))
        return self.decoder(self.quantizer.scaled(k))[0].float().cpu().numpy()

    def decode(self, indices: np.ndarray, erased: np.ndarray | None = None) -> np.ndarray:
        """Frame indices -> 16 kHz float32 audio, frames * hop samples (see WindowedDecoder)."""
        stream = WindowedDecoder(self)
        return np.concatenate([stream.push(indices, erased), stream.finish()])

    @torch.inference_mode()
    def quietest_code(self, frames: int = 50) -> tuple[int, float]:
        """The code whose run of `frames` the decoder renders quietest, and that level (dB
        full scale, away from the run's ends): what a silent phrase is sent as."""
        codes = torch.arange(self.mode.codebook_size, device=self.device)
        k = self.quantizer.from_index(codes[:, None].expand(-1, frames))
        audio = self.decoder(self.quantizer.scaled(k)).float()
        middle = audio[:, frames // 5 * self.mode.hop:frames * 4 // 5 * self.mode.hop]
        level = 10 * torch.log10(middle.pow(2).mean(1) + 1e-12)
        best = int(level.argmin())
        return best, float(level[best])


class WindowedDecoder:
    """Decodes frames as they arrive, WINDOW at a time with DECODE_CONTEXT frames of
    context on each side, so memory does not grow with the stream's length.

    Erased frames (lost, or in a block that failed its CRC) are concealed in the latent:
    each repeats the last good frame's code (frames before the first good one take the
    first good one), never decoded as noise.
    """

    def __init__(self, codec: Codec):
        self.codec = codec
        self.frames = np.zeros(0, dtype=np.int64)  # resolved frames, from frame `offset` on
        self.offset = 0  # stream position of frames[0]
        self.next_start = 0  # first frame of the next window to decode
        self.last_good: int | None = None
        self.unresolved = 0  # leading erased frames waiting for a first good frame

    def _resolve(self, indices: np.ndarray, erased: np.ndarray) -> np.ndarray:
        out = []
        for index, lost in zip(indices.tolist(), erased.tolist()):
            if not lost:
                if self.last_good is None:  # leading erasures take the first good frame
                    out.extend([index] * self.unresolved)
                    self.unresolved = 0
                self.last_good = index
                out.append(index)
            elif self.last_good is None:
                self.unresolved += 1
            else:
                out.append(self.last_good)
        return np.array(out, dtype=np.int64)

    def push(self, indices, erased=None) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        erased = np.zeros(len(indices), bool) if erased is None else np.asarray(erased, bool)
        self.frames = np.concatenate([self.frames, self._resolve(indices, erased)])
        out = []
        while self.offset + len(self.frames) >= self.next_start + WINDOW + DECODE_CONTEXT:
            out.append(self._decode_next())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def finish(self) -> np.ndarray:
        if self.unresolved:  # nothing good ever came: a constant code stands in
            self.frames = np.concatenate([self.frames, np.zeros(self.unresolved, np.int64)])
            self.unresolved = 0
        out = []
        while self.next_start < self.offset + len(self.frames):
            out.append(self._decode_next())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def _decode_next(self) -> np.ndarray:
        hop, start = self.codec.mode.hop, self.next_start
        total = self.offset + len(self.frames)
        lo, hi = max(0, start - DECODE_CONTEXT), min(total, start + WINDOW + DECODE_CONTEXT)
        audio = self.codec.decode_window(self.frames[lo - self.offset:hi - self.offset])
        end = min(start + WINDOW, total)
        self.next_start = end
        drop = max(0, end - DECODE_CONTEXT) - self.offset  # keep only the context still needed
        self.frames, self.offset = self.frames[drop:], self.offset + drop
        return audio[(start - lo) * hop:(end - lo) * hop]


class WindowedEncoder:
    """Feeds audio of any length in any pieces; yields indices window by window.

    Memory is one window, whatever the input length; the result equals Codec.encode on
    the concatenated input, because the windows are cut the same way.

    `choose`, if given, picks each window's codes instead of the argmax path (an
    encode-time search, see search.py): choose(window_audio, window_number, valid_samples,
    span) -> WINDOW indices, where valid_samples counts the real (not zero-padded) samples
    of the window's centre and span is the frames (first, end) of the whole window that
    hold the signal (see Codec.window_latent).
    """

    def __init__(self, codec: Codec, choose=None):
        self.codec = codec
        self.choose = choose
        self.windows_done = 0
        self.hop = codec.mode.hop
        # Leading context is zeros: the signal starts at frame 0.
        self.buffer = np.zeros(CONTEXT * self.hop, dtype=np.float32)
        self.total_samples = 0
        self.frames_done = 0

    def _window_samples(self) -> int:
        return (CONTEXT + WINDOW + CONTEXT) * self.hop

    def push(self, audio: np.ndarray) -> np.ndarray:
        self.total_samples += len(audio)
        self.buffer = np.concatenate([self.buffer, np.asarray(audio, dtype=np.float32)])
        out = []
        while len(self.buffer) >= self._window_samples():
            window = self.buffer[:self._window_samples()]
            out.append(self._encode_window(window, WINDOW * self.hop, self._span(len(window))))
            self.buffer = self.buffer[WINDOW * self.hop:]
            self.frames_done += WINDOW
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def _span(self, signal_end: int) -> tuple[int, int]:
        """The frames of the next fixed window that hold the signal. `signal_end`: samples
        of the window up to the signal's end (all of it but in the last window)."""
        return (CONTEXT if self.windows_done == 0 else 0, -(-signal_end // self.hop))

    def _encode_window(self, window: np.ndarray, valid_samples: int, span: tuple[int, int]
                       ) -> np.ndarray:
        number, self.windows_done = self.windows_done, self.windows_done + 1
        if self.choose is None:
            return self.codec.encode_window(window, span)
        return self.choose(window, number, valid_samples, span)

    def finish(self) -> np.ndarray:
        """Encode what is left (zero-padded); trims to ceil(total_samples / hop) frames."""
        frames_total = self.codec.num_frames(self.total_samples)
        out = []
        while self.frames_done < frames_total:
            window = np.zeros(self._window_samples(), dtype=np.float32)
            take = min(len(self.buffer), len(window))
            window[:take] = self.buffer[:take]
            valid = min(WINDOW * self.hop, self.total_samples - self.frames_done * self.hop)
            codes = self._encode_window(window, valid, self._span(take))
            out.append(codes[:frames_total - self.frames_done])
            self.frames_done += len(out[-1])
            self.buffer = self.buffer[WINDOW * self.hop:]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


# Phrases: a signal longer than one window is encoded a phrase at a time (session 25).
PAUSE_DB = 30.0  # a frame this far below the loudest of the next WINDOW frames is quiet
PAUSE_FRAMES = 5  # a pause: at least this many quiet frames in a row (200 ms)
MIN_PHRASE = 50  # frames (2 s): no cut before this
# The first pause this long is cut (with none, the longest). 5: the first pause at all.
# Waiting for sentence pauses (12, 480 ms) cost 2.8 points on running read speech:
# longer phrases (docs/results.md, "Long files", session 28).
LONG_PAUSE = PAUSE_FRAMES
# No phrase of a long signal is longer than this: against phrases of up to 10 s, it gained
# 0.5-2.9 points of WER on four sets of long files (docs/results.md, "Long files", session 28).
MAX_PHRASE = 150  # frames (6 s)


def frame_levels_db(audio: np.ndarray, hop: int) -> np.ndarray:
    """Each frame's power (zero-padded to whole frames), dB full scale."""
    frames = -(-len(audio) // hop)
    padded = np.zeros(frames * hop, np.float64)
    padded[:len(audio)] = audio
    return 10 * np.log10((padded.reshape(frames, hop) ** 2).mean(1) + 1e-10)


def phrase_frames(audio: np.ndarray, hop: int, last: bool, long_pause: int = LONG_PAUSE,
                  min_phrase: int = MIN_PHRASE, max_phrase: int = MAX_PHRASE) -> int:
    """Frames of the next phrase of `audio` (at most WINDOW frames of a longer signal, or,
    `last`, all that is left of it), at most `max_phrase`: up to the middle of a pause that
    ends at least `min_phrase` frames in, the first of at least `long_pause` frames, or else
    the longest (the first of equals). With no pause, a phrase that is not the last ends at
    its quietest frame past `min_phrase`, and the last takes everything."""
    if len(audio) // hop > max_phrase:  # the phrase ends within its first max_phrase frames
        audio, last = audio[:max_phrase * hop], False
    whole = len(audio) // hop
    total = -(-len(audio) // hop)
    if whole <= min_phrase:
        return total if last else whole
    level = np.convolve(frame_levels_db(audio[:whole * hop], hop), np.ones(3) / 3, mode="same")
    quiet = np.append(level < level.max() - PAUSE_DB, False)
    run, best = 0, None  # best: (frames, cut) of the longest pause so far
    for i, q in enumerate(quiet):
        if q:
            run += 1
            continue
        if run >= PAUSE_FRAMES and i >= min_phrase:
            if run >= long_pause:
                return i - run // 2
            if best is None or run > best[0]:
                best = (run, i - run // 2)
        run = 0
    if best is not None:
        return best[1]
    if last:
        return total
    return min_phrase + int(np.argmin(level[min_phrase:])) + 1


# Silence (session 29): a phrase with no speech in it, coded as a file of its own, came out
# as a noise floor about as loud as speech (digital silence at -44 dBFS, a quiet room's hiss
# at -70 dBFS at -35, at -45 dBFS at -30): nothing in Whisper's states says how quiet a
# window is. Inside a phrase with speech, pauses and noise come out quieter than they went
# in. So a silent phrase is sent as a run of the decoder's silence code, with no Whisper pass.
SILENT_DB = 45.0  # silent: a phrase whose loudest frame is this far below the loudest around it
HISTORY = 750  # frames (30 s) before a phrase that are around it, with the WINDOW from its start
SILENCE_FLOOR_DB = -80.0  # silent too: a phrase whose loudest frame is below this (dB full scale)
# Silent too: steady noise with no speech in it, a phrase whose frame levels spread (95th
# minus 10th percentile) less than STEADY_DB and whose loudest frame is STEADY_BELOW_DB below
# the loudest around it. Phrases with speech spread 13 dB or more, even in noise at 10 dB
# SNR (docs/results.md, "Recording conditions"); stationary noise 1-2 dB.
STEADY_DB = 6.0
STEADY_BELOW_DB = 15.0
STEADY_FRAMES = 10  # whole frames a phrase needs before its spread is judged
# A silence goes on (however long: the loudest around it may by then be the noise itself)
# while the phrases after it are steady and no more than this louder than the silent one.
STEADY_RISE_DB = 3.0


def loudest_frame_db(audio: np.ndarray, hop: int) -> float:
    """The power of the loudest frame (zero-padded to whole frames), dB full scale."""
    return float(frame_levels_db(audio, hop).max(initial=-100.0))


def is_silent(phrase: np.ndarray, hop: int, around_db: float, silence_db: float | None = None) -> bool:
    """Whether a phrase holds no speech: far below the loudest frame around it (around_db),
    under the floor, or steady noise well below it (see SILENT_DB and STEADY_DB), or, right
    after a silent phrase whose loudest frame was silence_db, steady and not much louder."""
    levels = frame_levels_db(phrase, hop)
    loudest = levels.max(initial=-100.0)
    if loudest < max(SILENCE_FLOOR_DB, around_db - SILENT_DB):
        return True
    whole = levels[:len(phrase) // hop]
    if len(whole) < STEADY_FRAMES or np.percentile(whole, 95) - np.percentile(whole, 10) >= STEADY_DB:
        return False
    return loudest < around_db - STEADY_BELOW_DB or (silence_db is not None and loudest <= silence_db + STEADY_RISE_DB)


class PhraseEncoder(WindowedEncoder):
    """WindowedEncoder for signals longer than one window, cut into phrases at pauses.

    Each phrase (2-6 s) is encoded as if it were a file of its own: zeros before and
    after it, the head reading only its frames. That is what the encoder was trained on:
    the corpus's utterances are files of 1-10 s (4 s on average), one speaker saying one
    thing. A 10 s window full of running speech gives Whisper's states another look, and
    coded that way the same utterances lost 13 points of WER; phrases of up to 10 s lost
    0.5-2.9 points more than phrases of up to 6 s (docs/results.md, "Long files"). A
    signal of at most one window is one phrase, encoded exactly as WindowedEncoder
    encodes it. A silent phrase (is_silent) is sent as a run of the codec's silence code.
    The cuts and the silence depend only on the signal, so a file, a pipe or any read size
    give the same codes; memory stays one window."""

    rule = (LONG_PAUSE, MIN_PHRASE, MAX_PHRASE)  # phrase_frames' knobs (a bench varies them)

    def __init__(self, codec: Codec, choose=None):
        super().__init__(codec, choose)
        self.buffer = np.zeros(0, dtype=np.float32)  # the signal from frame frames_done on
        self.recent: list[tuple[int, float]] = []  # (end frame, loudest dB) of phrases of the last HISTORY frames
        self.silence_db: float | None = None  # the loudest frame of the last phrase, if it was silent

    def push(self, audio: np.ndarray) -> np.ndarray:
        self.total_samples += len(audio)
        self.buffer = np.concatenate([self.buffer, np.asarray(audio, dtype=np.float32)])
        out = []
        while len(self.buffer) > WINDOW * self.hop:  # more than a window left: not the last phrase
            frames = phrase_frames(self.buffer[:WINDOW * self.hop], self.hop, False, *self.rule)
            out.append(self._next_phrase(frames))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def finish(self) -> np.ndarray:
        out = []
        while len(self.buffer):
            frames = WINDOW if self.frames_done == 0 else phrase_frames(self.buffer, self.hop, True, *self.rule)
            out.append(self._next_phrase(frames))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def _next_phrase(self, frames: int) -> np.ndarray:
        """The codes of the buffer's first `frames` frames: a run of the silence code if
        they are silent, else _encode_phrase's."""
        phrase = self.buffer[:frames * self.hop]
        self.recent = [(end, level) for end, level in self.recent if end > self.frames_done - HISTORY]
        around = max([loudest_frame_db(self.buffer[:WINDOW * self.hop], self.hop)]
                     + [level for _, level in self.recent])
        end = self.frames_done + -(-len(phrase) // self.hop)
        loudest = loudest_frame_db(phrase, self.hop)
        self.recent.append((end, loudest))
        silent = is_silent(phrase, self.hop, around, self.silence_db)
        self.silence_db = loudest if silent else None
        if self.codec.silence_code is None or not silent:
            return self._encode_phrase(phrase)
        self.windows_done += 1  # as if coded: an encode-time search seeds its draws by window
        return self._advance(phrase, np.full(end - self.frames_done, self.codec.silence_code, np.int64))

    def _encode_phrase(self, phrase: np.ndarray) -> np.ndarray:
        """Encode the phrase at the buffer's start as a file."""
        return self._advance(phrase, self._code_as_file(phrase))

    def _advance(self, phrase: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Drop the phrase (at the buffer's start) from the buffer; its codes go out."""
        self.buffer = self.buffer[len(phrase):]
        self.frames_done += len(codes)
        return codes

    def _code_as_file(self, samples: np.ndarray) -> np.ndarray:
        """The codes of `samples` (at most a window) encoded as a file of their own."""
        window = np.zeros(self._window_samples(), dtype=np.float32)
        window[CONTEXT * self.hop:CONTEXT * self.hop + len(samples)] = samples
        frames = -(-len(samples) // self.hop)
        return self._encode_window(window, len(samples), (CONTEXT, CONTEXT + frames))[:frames]
