#!/usr/bin/env python3
"""Would another measure of "closest" pick frame phases better than the states judge?

    python3 bench/long_files.py M --per-file 1 --gap 0 --save-hyps A.jsonl
    python3 bench/long_files.py M --per-file 1 --gap 0 --lead 0.02 --save-hyps B.jsonl
    python3 bench/phase_judges.py M A.jsonl B.jsonl

Each utterance (at most 10 s: one phrase) is coded as it is and delayed by half a frame,
as `encode --phase-search` codes it; Whisper's 50 Hz encoder states of the original and of
both decodings are computed once, and several judges pick a phase from them. The
transcripts long_files.py saved for the two codings score each judge's picks (as
bench/phase_probe.py scores the shipped judge's). A probe, not a feature.
"""
from __future__ import annotations

import sys

import numpy as np

from claricodec.evaluate import RATE
from phase_probe import arguments, print_picks, read_runs

HOP = 640


def unit(states: np.ndarray) -> np.ndarray:
    return states / (np.linalg.norm(states, axis=-1, keepdims=True) + 1e-8)


def judges(states: np.ndarray, level_db: np.ndarray) -> dict[str, np.ndarray]:
    """states [3, T, 384] (original, phase 0, phase 1), level_db [T] of the original ->
    each judge's score of the two phases (higher is closer)."""
    cosine = (unit(states[1:]) * unit(states[0])).sum(-1)  # [2, T]
    scores = {"mean cosine over all frames (the judge)": cosine.mean(1)}
    for below in (30, 40, 50):
        loud = level_db > level_db.max() - below
        scores[f"mean cosine over frames within {below} dB of the loudest"] = cosine[:, loud].mean(1)
    weight = np.clip(level_db - (level_db.max() - 50), 0, None)
    scores["cosine weighted by level"] = (cosine * weight).sum(1) / weight.sum()
    scores["L2 distance of the raw states"] = -np.linalg.norm(states[1:] - states[0], axis=-1).mean(1)
    scores["10th percentile of the cosines"] = np.percentile(cosine, 10, axis=1)
    return scores


def phase_states(codec, states, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whisper states of the audio and of its two codings, and its level per 50 Hz frame."""
    from claricodec.codec import PhraseEncoder
    n, frames = len(audio), -(-len(audio) // HOP)
    batch = np.zeros((3, frames * HOP), np.float32)
    batch[0, :n] = audio
    for row, offset in ((1, 0), (2, HOP // 2)):
        delayed = np.concatenate([np.zeros(offset, np.float32), audio])[:frames * HOP]
        encoder = PhraseEncoder(codec.model)
        codes = np.concatenate([encoder.push(delayed), encoder.finish()])
        decoded = codec.model.decode(codes)[offset:offset + n]  # back in place
        batch[row, :len(decoded)] = decoded
    level = 10 * np.log10((batch[0].reshape(-1, HOP // 2) ** 2).mean(1) + 1e-10)
    return states.states_50hz_batch(batch), level


def main() -> None:
    args = arguments(__doc__.split("\n\n")[0])
    import torch

    from claricodec.api import ClariCodec
    from claricodec.audio import load_audio
    from claricodec.whisper_front import WhisperStates
    torch.set_num_threads(args.threads)
    rows, as_is, moved = read_runs(args)
    codec, states = ClariCodec(args.weights), WhisperStates.shared()
    picks: dict[str, list[bool]] = {}
    for number, result in enumerate(as_is, 1):
        scores = judges(*phase_states(codec, states, load_audio(rows[result.id]["path"], RATE)))
        for name, score in scores.items():
            picks.setdefault(name, []).append(bool(np.argmax(score) == 1))
        if number % 50 == 0:
            print(f"{number}/{len(as_is)}", file=sys.stderr)
    print_picks(as_is, moved, picks)


if __name__ == "__main__":
    main()
