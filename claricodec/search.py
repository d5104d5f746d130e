"""Encode-time search: try several code sequences per window, keep the one an ASR understands.

The quantiser is a stochastic policy (quantizer.py). For each 10 s analysis window the
searching encoder takes the argmax codes and N - 1 samples from the policy, decodes each
with the decoder the receiver has, transcribes them with Whisper (greedy, the fast
REWARD setting), and keeps the one whose transcript is closest (character error rate) to
Whisper's transcript of the original audio of that window. Ties, silence and windows the
ASR hears nothing in keep the argmax codes. This is analysis by synthesis: the encoder
can afford N decodes and N + 1 transcriptions a window, the link cannot afford one more
bit. The bit rate, the format and the decoder do not change, so any receiver decodes the
result. StatesSearch judges the same candidates without a transcript: by how close
Whisper's encoder states of each decoded candidate are to those of the original.

With `segment_frames` the choice is made per segment of the window instead (greedy, left
to right): for each segment the candidates are the codes chosen so far with that segment
taken from each draw in turn, judged on the whole window; the best becomes the codes
chosen so far. One window's draws can then win in different segments (session 22: 1 s
segments doubled the whole-window search's gain on dev, at 4x its encoding time). Its
draws are hotter than the policy (HEAT_SEGMENTS): a segment's winner is mostly the draw
that moved more codes there, so draws that move more find better codes more often.

Same input, same bytes: window k's samples come from a generator seeded with (seed, k),
drawn on the CPU whatever the model's device.
"""
from __future__ import annotations

import numpy as np
import torch

from .codec import CONTEXT, DECODE_CONTEXT, Codec
from .textnorm import count_errors, normalize


def pick_closest(reference: str, hypotheses: list[str]) -> int:
    """Index of the hypothesis with the lowest CER against reference; the first on a tie.
    An empty reference (nothing heard) picks 0."""
    if not normalize(reference):
        return 0
    return int(np.argmin([count_errors(reference, h).cer for h in hypotheses]))


# The per-segment search's draws are hotter than the policy: a segment needs a draw that
# beats the codes so far only there, and draws that move more codes find one more often
# (session 23, 200 held-out train utterances: x1 34.3 % WER, x2 32.8, x4 31.5).
HEAT_SEGMENTS = 4.0


def segment_spans(frames: int, step: int, end: int) -> list[tuple[int, int]]:
    """Frames [start, stop) of each choice in a window with `frames` frames of signal:
    segments of `step` frames, the last running to `end` (the window's end), so frames past
    the signal (trimmed later) come from the same draw, as in a whole-window search."""
    return [(start, start + step if start + step < frames else end) for start in range(0, frames, step)]


class ASRSearch:
    """choose() for WindowedEncoder: best of `candidates` code sequences per window."""

    def __init__(self, codec: Codec, asr, candidates: int = 8, seed: int = 0, options=None,
                 segment_frames: int | None = None, heat: float | None = None):
        """segment_frames: choose per segment of that many frames (None: per window). heat:
        the draws' temperature as a multiple of the policy's (default: HEAT_SEGMENTS with
        segments, else 1)."""
        from .asr import REWARD
        if candidates < 1:
            raise ValueError("candidates must be at least 1")
        if segment_frames is not None and segment_frames < 1:
            raise ValueError("segment_frames must be at least 1")
        if heat is not None and not heat > 0:
            raise ValueError("heat must be a positive number")
        self.codec, self.asr, self.candidates, self.seed = codec, asr, candidates, seed
        self.options = options or REWARD
        self.segment_frames = segment_frames
        self.heat = heat if heat is not None else (HEAT_SEGMENTS if segment_frames else 1.0)
        self.chosen_sample = 0  # choices (windows, or segments) a sample won (for reports)
        self.windows = 0
        self.choices = 0

    @torch.inference_mode()
    def candidate_levels(self, window_audio: np.ndarray, window_number: int,
                         span: tuple[int, int] | None = None) -> torch.Tensor:
        """[N, D, WINDOW] level indices on the CPU: the argmax path first, then N - 1
        samples from the policy."""
        q = self.codec.quantizer
        z = self.codec.window_latent(window_audio, span)
        argmax = q.argmax(z).cpu()
        if self.candidates == 1:
            return argmax
        probs = torch.softmax(q.logits(z.float(), q.temperature * self.heat), dim=-1).cpu()
        probs = probs.expand(self.candidates - 1, -1, -1, -1)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + window_number)
        samples = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
        return torch.cat([argmax, samples.view(probs.shape[:-1])])

    def best(self, original: np.ndarray, decoded: np.ndarray) -> int:
        """Index of the decoded candidate ([N, samples]) to keep for this original audio."""
        reference, *hypotheses = self.asr.texts([original, *decoded], self.options)
        return pick_closest(reference, hypotheses)

    @torch.inference_mode()
    def __call__(self, window_audio: np.ndarray, window_number: int, valid_samples: int,
                 span: tuple[int, int] | None = None) -> np.ndarray:
        q, hop = self.codec.quantizer, self.codec.mode.hop
        levels = self.candidate_levels(window_audio, window_number, span)
        self.windows += 1
        chosen = levels[0]
        if len(levels) > 1 and valid_samples > 0:
            original = window_audio[CONTEXT * hop:CONTEXT * hop + valid_samples]
            frames = -(-valid_samples // hop)
            heard = self._decode(chosen[None, :, :frames])[0]  # the codes so far, decoded
            for start, stop in segment_spans(frames, self.segment_frames or frames, levels.shape[-1]):
                trials = chosen.expand(len(levels) - 1, -1, -1).clone()
                trials[:, :, start:stop] = levels[1:, :, start:stop]
                decoded = self._decode_changed(trials[:, :, :frames], heard, start, min(stop, frames))
                unmoved = (trials[:, :, :frames] == chosen[None, :, :frames]).flatten(1).all(1).numpy()
                decoded[unmoved] = heard  # a draw that moved nothing here ties with the codes so far
                best = self.best(original, np.concatenate([heard[None], decoded])[:, :valid_samples])
                self.choices += 1
                self.chosen_sample += best > 0
                if best > 0:  # trial 0 is the codes so far
                    chosen, heard = trials[best - 1], decoded[best - 1]
        return q.to_index(chosen[None].to(self.codec.device))[0].cpu().numpy().astype(np.int64)

    @torch.inference_mode()
    def _decode(self, levels: torch.Tensor) -> np.ndarray:
        """[N, D, T] levels -> [N, T * hop] audio."""
        scaled = self.codec.quantizer.scaled(levels.to(self.codec.device))
        return self.codec.decoder(scaled).float().cpu().numpy()

    def _decode_changed(self, trials: torch.Tensor, heard: np.ndarray, start: int, stop: int
                        ) -> np.ndarray:
        """The audio of trials [N, D, frames] that differ from the codes so far (decoded:
        `heard`) only in frames [start, stop). A frame's code reaches 12 frames of audio
        either side (the decoder's receptive field, as the receiver's windowed decoding
        relies on), so only those are decoded again, from a crop with as much margin again:
        a 1 s segment of a 10 s window costs a third of the window's decode."""
        hop, frames = self.codec.mode.hop, trials.shape[-1]
        first, end = max(0, start - DECODE_CONTEXT), min(frames, stop + DECODE_CONTEXT)  # audio that can change
        crop_first, crop_end = max(0, first - DECODE_CONTEXT), min(frames, end + DECODE_CONTEXT)
        local = self._decode(trials[:, :, crop_first:crop_end])
        out = np.repeat(heard[None], len(trials), axis=0)
        out[:, first * hop:end * hop] = local[:, (first - crop_first) * hop:(end - crop_first) * hop]
        return out


class StatesSearch(ASRSearch):
    """The same candidates, judged without a transcript: keeps the one whose Whisper
    encoder states (the front's model, 50 Hz, last layer) are closest to the original's,
    mean cosine over frames; ties keep the argmax codes. No recogniser's words are
    compared, so there is no one recogniser's vocabulary to fit (the transcript judge's
    gain was mostly what Whisper tiny.en in particular hears: docs/results.md, search section)."""

    def __init__(self, codec: Codec, candidates: int = 8, seed: int = 0, states=None,
                 segment_frames: int | None = None, heat: float | None = None):
        super().__init__(codec, None, candidates, seed, segment_frames=segment_frames, heat=heat)
        self._states = states
        # Whisper's unit states of signals already heard in this window (the original; a
        # segment search's codes so far, trial 0 of every choice): the same numbers, once.
        self._heard: dict[bytes, np.ndarray] = {}

    def candidate_levels(self, *args, **kwargs) -> torch.Tensor:
        self._heard = {}  # a new window
        return super().candidate_levels(*args, **kwargs)

    def best(self, original: np.ndarray, decoded: np.ndarray) -> int:
        # The first of equal scores: the argmax path.
        return int(np.argmax(states_similarity(original, decoded, self._states, self._heard)))


def states_similarity(original: np.ndarray, decoded: np.ndarray, states=None,
                      heard: dict | None = None) -> np.ndarray:
    """How close each decoded candidate ([N, samples]) sounds to the original, as Whisper's
    encoder hears it: mean cosine over 50 Hz frames of the last layer's states (the front's
    model, WhisperStates). Used by StatesSearch and by stage 2's "states" reward. `heard`:
    a memo of signals already computed (by their bytes), filled in here."""
    return states_similarity_frames(original, decoded, states, heard).mean(1)


def states_similarity_frames(original: np.ndarray, decoded: np.ndarray, states=None,
                             heard: dict | None = None) -> np.ndarray:
    """states_similarity before its mean: [N, 50 Hz frames] cosines (stage 2's
    "states-local" reward credits each frame with its neighbourhood's)."""
    import hashlib

    from .whisper_front import WhisperStates, WHISPER_HOP
    states = states or WhisperStates.shared()
    heard = {} if heard is None else heard
    step = 2 * WHISPER_HOP  # states_50hz takes whole 25 Hz frames
    length = -(-max(len(original), decoded.shape[1]) // step) * step
    padded = np.zeros((len(decoded) + 1, length), np.float32)
    padded[0, :len(original)] = original
    padded[1:, :decoded.shape[1]] = decoded
    keys = [hashlib.sha1(row.tobytes()).digest() for row in padded]
    new = {key: row for key, row in zip(keys, padded) if key not in heard}
    if new:  # one Whisper pass for all signals not heard yet
        for key, f in zip(new, states.states_50hz_batch(np.stack(list(new.values())))):
            heard[key] = f / np.linalg.norm(f, axis=1, keepdims=True)
    unit = [heard[key] for key in keys]
    return np.stack([(u * unit[0]).sum(1) for u in unit[1:]])
