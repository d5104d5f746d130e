#!/usr/bin/env python3
"""What a long pause sounds like after coding: a clip, a pause of room hiss, the clip again.

    python3 bench/pauses.py                          # tests/data/hello.wav, 15 s at -70 dBFS
    python3 bench/pauses.py --pause 20 --hiss -60 --clip speech.wav

Prints the decoded level of each second of the pause, and of files that hold only
digital silence or only the hiss, in dB full scale, next to the decoded speech's level.
Since session 29 a phrase with no speech is sent as the decoder's silence code
(codec.PhraseEncoder); `PYTHONPATH=<an older checkout>` runs it on earlier encoding.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from claricodec.api import ClariCodec
from claricodec.audio import load_audio

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000


def level(audio: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(audio, np.float64) ** 2) + 1e-20))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=ROOT / "tests" / "data" / "hello.wav")
    parser.add_argument("--pause", type=int, default=15, help="seconds of pause between the clips")
    parser.add_argument("--hiss", type=float, default=-70.0, help="the pause's white noise, dB full scale")
    parser.add_argument("--weights", default=None)
    args = parser.parse_args()
    codec = ClariCodec(args.weights)
    clip = load_audio(args.clip, RATE)
    hiss = (np.random.default_rng(0).standard_normal(args.pause * RATE) * 10 ** (args.hiss / 20)).astype(np.float32)

    def round_trip(audio: np.ndarray) -> np.ndarray:
        return codec.decode(codec.encode(audio, RATE))[0]

    decoded = round_trip(np.concatenate([clip, hiss, clip]))
    seconds = [level(decoded[len(clip) + i * RATE:len(clip) + (i + 1) * RATE]) for i in range(args.pause)]
    print(f"{args.clip.name} ({len(clip) / RATE:.1f} s), {args.pause} s of {args.hiss:g} dBFS hiss, "
          f"{args.clip.name}; weights {codec.info['model_id']}, silence code {getattr(codec.model, 'silence_code', None)}")
    print(f"clip in: {level(clip):.1f} dBFS, decoded: {level(decoded[:len(clip)]):.1f} dBFS")
    print("pause, each second decoded (dBFS): " + ", ".join(f"{s:.1f}" for s in seconds))
    print(f"a file of 4 s digital silence, decoded: {level(round_trip(np.zeros(4 * RATE, np.float32))):.1f} dBFS")
    print(f"a file of 4 s of the hiss alone, decoded: {level(round_trip(hiss[:4 * RATE])):.1f} dBFS")


if __name__ == "__main__":
    main()
