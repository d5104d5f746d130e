#!/usr/bin/env python3
"""How many short clips per second the ASR transcribes, per backend and batch size.

    python3 bench/asr_speed.py --clips 16 --threads 1

Clips are real ~3 s utterances from the dev corpus (2.5-3.5 s), or tests/data/hello.wav
cut to 3 s when there is no corpus. Each configuration transcribes the same clips once
after a warm-up call; the printed figure is clips / wall-clock second. The machine's other
load shows up in the numbers, so compare rows from the same run only.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = ROOT.parent / "shared" / "corpus" / "dev" / "manifest.jsonl"


def load_clips(manifest: Path, count: int) -> list[np.ndarray]:
    from claricodec.audio import load_audio
    if manifest.is_file():
        from claricodec.train.data import read_manifest
        rows = [r for r in read_manifest(manifest) if 2.5 <= (r.get("seconds") or 0) <= 3.5]
        return [load_audio(r["path"], 16000) for r in rows[:count]]
    hello = load_audio(ROOT / "tests" / "data" / "hello.wav", 16000)[:48000]
    return [hello] * count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--batch-sizes", default="1,4,8,16")
    parser.add_argument("--beams", default="1,5")
    parser.add_argument("--windows", default="30,0",
                        help="encoder windows in seconds; 0 = fitted to the batch (min 10 s)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from dataclasses import replace

    from claricodec.asr import ASR, REWARD

    clips = load_clips(args.manifest, args.clips)
    seconds = sum(len(c) for c in clips) / 16000
    print(f"{len(clips)} clips, mean {seconds / len(clips):.2f} s, {args.threads} thread(s), "
          f"device {args.device}", file=sys.stderr)
    print("| backend | batch | beam | window s | clips/s | x real time |")
    print("|---|---|---|---|---|---|")
    runs = [("faster-whisper", 1)] + [("ctranslate2", int(b)) for b in args.batch_sizes.split(",")]
    for window in (float(w) for w in args.windows.split(",")):
        for beam in (int(b) for b in args.beams.split(",")):
            options = replace(REWARD, beam_size=beam, window_seconds=window or None)
            label = f"{window:g}" if window else "fitted"
            for backend, batch in runs:
                asr = ASR(device=args.device, threads=args.threads, batch_size=batch, backend=backend)
                asr.transcribe(clips[:1], options)  # warm-up: first call allocates
                start = time.perf_counter()
                asr.transcribe(clips, options)
                wall = time.perf_counter() - start
                print(f"| {backend} | {batch if backend == 'ctranslate2' else 'per file'} | {beam} "
                      f"| {label} | {len(clips) / wall:.2f} | {seconds / wall:.1f} |", flush=True)


if __name__ == "__main__":
    main()
