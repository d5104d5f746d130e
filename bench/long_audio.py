"""Hours-long input: peak memory, speed, and codes that do not depend on how input is fed.

    python3 bench/long_audio.py --minutes 10 60 > long.md
    python3 bench/long_audio.py --minutes 5 --encode-options="--search 8"

For each length it builds a WAV of real dev speech (utterances repeated end to end), then
runs the real command line under /usr/bin/time: `claricodec encode FILE`, the same audio
piped through stdin (`encode - `), and `claricodec decode`. It prints wall time, x real
time and peak resident memory, and checks that file and pipe gave identical frames.
Peak memory should not grow with length: audio is processed 10 s at a time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "corpus" / "dev" / "manifest.jsonl"
# The command installed beside this Python (a venv's bin/ need not be on PATH)
BESIDE = Path(sys.executable).parent / "claricodec"
CLI = str(BESIDE) if BESIDE.is_file() else "claricodec"


def speech(minutes: float, manifest: Path) -> np.ndarray:
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    pieces, total, need = [], 0, int(minutes * 60 * 16000)
    for row in rows[::7]:
        audio, rate = sf.read(manifest.parent / row["path"], dtype="float32")
        assert rate == 16000
        pieces.append(audio)
        total += len(audio)
        if total >= need:
            break
    one_pass = np.concatenate(pieces)
    return np.tile(one_pass, need // len(one_pass) + 1)[:need]


def timed(command: str) -> tuple[float, int]:
    """Wall seconds and peak resident memory (MB) of a shell command."""
    result = subprocess.run(["/usr/bin/time", "-f", "%e %M", "bash", "-c", command],
                            capture_output=True, text=True, check=True)
    wall, peak_kb = result.stderr.strip().splitlines()[-1].split()
    return float(wall), int(peak_kb) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    parser.add_argument("--manifest", type=Path, default=DEV)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--encode-options", default="", metavar="'--search 8'",
                        help="extra options for both encode commands; write it with '=' "
                             "(--encode-options=--search=8), or a value starting with '--' is taken for an option")
    args = parser.parse_args()
    from claricodec.bitstream import read_stream

    env_weights = f"--weights {args.weights} " if args.weights else ""
    options = " ".join(filter(None, ["encode", env_weights.strip(), args.encode_options]))
    encode = f"{CLI} {options} "
    print(f"claricodec on {os.cpu_count()} CPU core(s), torch threads default; "
          f"real dev speech repeated to length; `claricodec {options}`.\n")
    print("| input | encode s | encode x RT | encode peak MB | pipe encode peak MB | "
          "decode s | decode x RT | decode peak MB | file = pipe codes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            wav, cc, piped, out = (Path(tmp) / n for n in ("in.wav", "in.cc", "pipe.cc", "out.wav"))
            sf.write(wav, speech(minutes, args.manifest), 16000, subtype="PCM_16")
            seconds = minutes * 60
            enc_s, enc_mb = timed(f"{encode}{wav} {cc} 2>/dev/null")
            _, pipe_mb = timed(f"cat {wav} | {encode}- {piped} 2>/dev/null")
            dec_s, dec_mb = timed(f"{CLI} decode {env_weights}{cc} {out} 2>/dev/null")
            same = read_stream(cc.read_bytes()).indices == read_stream(piped.read_bytes()).indices
            print(f"| {minutes:g} min | {enc_s:.0f} | {seconds / enc_s:.0f}x | {enc_mb} | {pipe_mb} | "
                  f"{dec_s:.0f} | {seconds / dec_s:.0f}x | {dec_mb} | {'yes' if same else 'NO'} |",
                  flush=True)
            for path in (wav, cc, piped, out):
                path.unlink()


if __name__ == "__main__":
    sys.exit(main())
