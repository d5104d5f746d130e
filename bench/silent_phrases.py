#!/usr/bin/env python3
"""Does the encoder's silence rule ever take speech? Counted without running the model.

    python3 bench/silent_phrases.py /tmp/dev.jsonl --per-file 10 --gap 3
    python3 bench/silent_phrases.py LIBRI.jsonl --per-file 1 --gap 0

Utterances from a manifest are joined as bench/long_files.py joins them (--per-file, --gap
seconds of digital silence after each), then, for each --snr, pink noise is laid over the
whole file, pauses included (a noisy room), and the encoder's phrase cutting and silence
rule (codec.PhraseEncoder, codec.is_silent) run over it with the model left out. Prints,
per SNR, the frames sent as silence and, of those, the frames with speech in them: frames
of the clean file within --speech-db of its loudest frame.
"""
from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import numpy as np

from claricodec.audio import load_audio
from claricodec.codec import PhraseEncoder, frame_levels_db
from conditions import active_rms, pink_noise

HOP = 640
RATE = 16000
SILENCE = -1  # stands for the silence code: no real code is negative


class SilenceRecorder(PhraseEncoder):
    """The phrase cutting and the silence rule alone: phrases with sound come out as 0."""

    def __init__(self):
        super().__init__(SimpleNamespace(mode=SimpleNamespace(hop=HOP), silence_code=SILENCE))

    def _code_as_file(self, samples: np.ndarray) -> np.ndarray:
        return np.zeros(-(-len(samples) // HOP), np.int64)


def silent_frames(signal: np.ndarray) -> np.ndarray:
    """Which frames of the signal the encoder sends as silence."""
    encoder = SilenceRecorder()
    return np.concatenate([encoder.push(signal), encoder.finish()]) == SILENCE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("--per-file", type=int, default=10)
    parser.add_argument("--gap", type=float, default=3.0)
    parser.add_argument("--snr", default="none,30,20,10,5", help="comma-separated dB; none: no noise")
    parser.add_argument("--speech-db", type=float, default=25.0)
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(args.manifest) if line.strip()]
    gap = np.zeros(round(args.gap * RATE), np.float32)
    files = [np.concatenate([piece for row in rows[i:i + args.per_file] for piece in (load_audio(row["path"], RATE), gap)])
             for i in range(0, len(rows), args.per_file)]
    print(f"{len(rows)} utterances from {args.manifest}, {args.per_file} to a file, {args.gap:g} s after each; "
          f"speech: frames within {args.speech_db:g} dB of the clean file's loudest")
    print("| noise | frames | sent as silence | of them with speech |")
    print("|---|---:|---:|---:|")
    for snr in args.snr.split(","):
        total = silent = taken = 0
        for number, clean in enumerate(files):
            signal = clean
            if snr != "none":
                noise = pink_noise(len(clean), np.random.default_rng(number)) * active_rms(clean) * 10 ** (-float(snr) / 20)
                signal = (clean + noise).astype(np.float32)
            gated = silent_frames(signal)
            levels = frame_levels_db(clean, HOP)
            speech = levels > levels.max() - args.speech_db
            total, silent, taken = total + len(gated), silent + gated.sum(), taken + (gated & speech).sum()
        print(f"| {'none' if snr == 'none' else 'pink, ' + snr + ' dB SNR'} | {total} | {silent} | {taken} |")


if __name__ == "__main__":
    main()
