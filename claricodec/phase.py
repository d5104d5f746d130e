"""Phase search: each phrase coded at more than one frame phase, the one heard closest kept.

Where the 40 ms frame boundaries fall against the speech is a lottery for each phrase
(session 26: moved by 20 ms, 381 of dev's 617 utterances came out with a different number
of word errors, better or worse). PhasedEncoder codes every phrase that PhraseEncoder cuts
at `phases` offsets spread over a frame (2: 0 and 20 ms), decodes each, and keeps the one
whose Whisper encoder states are closest to the phrase's (pick_phase).

Nothing is signalled. A phrase coded at offset o still fills its own frames; its content
is just delayed by o samples inside them: the o samples before the phrase (the pause it
was cut in, or silence before the file) come first, and its last o samples are left out.
So the decoder, the bit rate and the format are those of plain encoding, and any decoder
plays the file. A phrase's speech comes out up to o samples late, and a phrase may only
take an offset whose left-out samples are a pause (PAUSE_DB below its loudest frame) or
fall in the padding of its last frame. Phrases are cut in the middle of pauses, so that
holds for all but phrases cut in running speech and files that end mid-word.

Session 26's first version coded the whole signal twice and told the decoder with a
header flag (bitstream.py, "lead"); decoders still honour that flag, no encoder sets it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .codec import PAUSE_DB, Codec, PhraseEncoder

PHASES = 2  # frame phases tried per phrase by `encode --phase-search`


def phase_offsets(hop: int, phases: int) -> list[int]:
    """The delays tried, in samples: `phases` spread evenly over a frame, 0 first."""
    if phases < 1:
        raise ValueError("phases must be at least 1")
    return [round(i * hop / phases) for i in range(phases)]


def is_pause(left_out: np.ndarray, phrase: np.ndarray, hop: int) -> bool:
    """Whether samples a phase would leave out are quiet: PAUSE_DB below the phrase's
    loudest frame (the rule phrase cuts use), or none at all."""
    if len(left_out) == 0:
        return True
    frames = -(-len(phrase) // hop)
    padded = np.zeros(frames * hop, np.float64)
    padded[:len(phrase)] = phrase
    loudest = (padded.reshape(frames, hop) ** 2).mean(1).max()
    return float(np.mean(np.asarray(left_out, np.float64) ** 2)) < loudest * 10 ** (-PAUSE_DB / 10)


def pick_phase(original: np.ndarray, decoded: list[np.ndarray], states=None) -> int:
    """The judge: the index of the decoded phrase (each as long as the original, at most
    10 s: one Whisper pass) whose Whisper encoder states are closest to the original's
    (search.states_similarity); ties keep the first."""
    from .search import states_similarity
    return int(np.argmax(states_similarity(original, np.stack(decoded), states)))  # the first of equal maxima


@dataclass
class PhaseTally:
    """Phrases phase-searched, and how many of them were sent delayed (for reports)."""
    phrases: int = 0
    moved: int = 0


class PhasedEncoder(PhraseEncoder):
    """PhraseEncoder that codes each phrase at several frame phases and keeps the one the
    judge prefers (see the module's docstring). Same cuts as PhraseEncoder, and the choice
    depends only on the signal, so a file, a pipe or any read size give the same codes;
    memory stays a window. `choose` (an encode-time search) codes each phase."""

    def __init__(self, codec: Codec, choose=None, phases: int = PHASES, judge=None,
                 tally: PhaseTally | None = None):
        super().__init__(codec, choose)
        self.offsets = phase_offsets(self.hop, phases)
        self.judge = judge  # None: pick_phase, looked up at call time
        self.tally = tally
        self.before = np.zeros(self.offsets[-1], np.float32)  # the signal just before the next phrase
        self.chosen: list[int] = []  # each phrase's offset, for probes

    def _encode_phrase(self, phrase: np.ndarray) -> np.ndarray:
        frames = -(-len(phrase) // self.hop)
        padding = frames * self.hop - len(phrase)
        offsets, codes, heard = [], [], []
        for offset in self.offsets:
            left_out = phrase[len(phrase) - max(0, offset - padding):]
            if offset and not is_pause(left_out, phrase, self.hop):
                continue
            delayed = np.concatenate([self.before[len(self.before) - offset:], phrase])
            candidate = self._code_as_file(delayed[:frames * self.hop])
            audio = np.zeros(len(phrase), np.float32)
            decoded = self.codec.decode(candidate)[offset:offset + len(phrase)]
            audio[:len(decoded)] = decoded  # back in place, for the judge
            offsets.append(offset)
            codes.append(candidate)
            heard.append(audio)
        best = 0 if len(codes) == 1 else (self.judge or pick_phase)(phrase, heard)
        self.chosen.append(offsets[best])
        if self.tally is not None:
            self.tally.phrases += 1
            self.tally.moved += offsets[best] > 0
        return self._advance(phrase, codes[best])

    def _advance(self, phrase: np.ndarray, codes: np.ndarray) -> np.ndarray:
        kept = np.concatenate([self.before, phrase])
        self.before = kept[len(kept) - len(self.before):]
        return super()._advance(phrase, codes)
