#!/usr/bin/env python3
"""Where the phrase rule cuts joined utterances: between them, or inside one. No coding.

    python3 bench/phrase_cuts.py /tmp/heldout200.jsonl --rule 5,50,150 --rule 12,50,150 --rule 5,50,250

Joins groups of utterances end to end as bench/long_files.py does (same --per-file and
--gap), runs the encoder's phrase cutting (codec.PhraseEncoder, the model not run) with
each --rule LONG_PAUSE,MIN_PHRASE[,MAX_PHRASE] (frames; see codec.phrase_frames) and counts, per rule:
cuts in the silence between utterances and cuts inside one's sound; utterances alone in a phrase,
sharing one with others, and cut in two. An utterance alone in its phrase is what the
encoder trained on (docs/results.md, "Long files"). Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from claricodec.codec import PAUSE_DB, PhraseEncoder

HOP = 640  # samples a codec frame (25 Hz at 16 kHz)


class CutRecorder(PhraseEncoder):
    """The phrase cutting alone: records where each phrase starts, codes nothing."""

    def __init__(self, hop: int, rule: tuple[int, ...]):
        # No silence code: every phrase, silent or not, reaches _code_as_file (the cuts are the same).
        super().__init__(SimpleNamespace(mode=SimpleNamespace(hop=hop), silence_code=None))
        self.rule = rule
        self.starts: list[int] = []  # first sample of each phrase

    def _code_as_file(self, samples: np.ndarray) -> np.ndarray:
        self.starts.append(self.frames_done * self.hop)
        return np.zeros(-(-len(samples) // self.hop), np.int64)


def cuts(signal: np.ndarray, rule: tuple[int, ...], hop: int) -> list[int]:
    """Samples where phrases after the first start."""
    recorder = CutRecorder(hop, rule)
    recorder.push(signal)
    recorder.finish()
    return recorder.starts[1:]


def speech_spans(signal: np.ndarray, spans: list[tuple[int, int]], hop: int) -> list[tuple[int, int]]:
    """Each utterance's span trimmed to its sound: from its first to its last frame within
    PAUSE_DB of its loudest. A cut in a recording's own lead-in or tail silence is a cut
    between utterances."""
    trimmed = []
    for first, end in spans:
        frames = (end - first) // hop
        power = (np.asarray(signal[first:first + frames * hop], np.float64).reshape(frames, hop) ** 2).mean(1)
        level = 10 * np.log10(power + 1e-10)
        loud = np.flatnonzero(level >= level.max() - PAUSE_DB)
        trimmed.append((first + loud[0] * hop, first + (loud[-1] + 1) * hop))
    return trimmed


def tally(spans: list[tuple[int, int]], cut_samples: list[int]) -> dict[str, int]:
    inside = [c for c in cut_samples if any(first < c < end for first, end in spans)]
    counts = {"cuts": len(cut_samples), "inside": len(inside), "alone": 0, "sharing": 0, "split": 0}
    bounds = [0, *cut_samples, 1 << 62]
    for first, end in spans:
        if any(first < c < end for c in inside):
            counts["split"] += 1
            continue
        phrase = max(i for i, b in enumerate(bounds) if b <= first)
        lo, hi = bounds[phrase], bounds[phrase + 1]
        others = sum(1 for f, e in spans if (f, e) != (first, end) and lo <= f and e <= hi)
        counts["alone" if others == 0 else "sharing"] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", help="JSONL manifest (id, path), e.g. from bench/heldout.py")
    parser.add_argument("--per-file", type=int, default=10, help="utterances joined into one file")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds of silence after each utterance")
    parser.add_argument("--rule", action="append", default=None, metavar="LONG_PAUSE,MIN_PHRASE[,MAX_PHRASE]",
                        help="a rule to count (repeatable; default: the shipped one)")
    args = parser.parse_args()

    from long_files import join, phrase_rule  # bench/ is on the path when run as a script

    rules = [phrase_rule(r) for r in args.rule] if args.rule else [PhraseEncoder.rule]
    rows = [json.loads(line) for line in Path(args.manifest).read_text().splitlines() if line.strip()]
    groups = [rows[i:i + args.per_file] for i in range(0, len(rows), args.per_file)]
    signals = []
    for group in groups:
        signal, spans = join(group, args.gap)
        signals.append((signal, speech_spans(signal, spans, HOP)))
    print(f"{len(rows)} utterances in {len(groups)} files ({args.per_file} a file, {args.gap:g} s after each)\n")
    print("| LONG_PAUSE, MIN_PHRASE, MAX_PHRASE (frames) | cuts | inside an utterance | utterances alone | sharing | cut in two |")
    print("|---|---:|---:|---:|---:|---:|")
    for rule in rules:
        total: dict[str, int] = {}
        for signal, spans in signals:
            for key, value in tally(spans, cuts(signal, rule, HOP)).items():
                total[key] = total.get(key, 0) + value
        marker = " (shipped)" if rule == PhraseEncoder.rule else ""
        print(f"| {', '.join(map(str, rule))}{marker} | {total['cuts']} | {total['inside']} | {total['alone']} | "
              f"{total['sharing']} | {total['split']} |")


if __name__ == "__main__":
    main()
