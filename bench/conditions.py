#!/usr/bin/env python3
"""The same utterances under the conditions a user's recording brings: level, clipping,
background noise, a telephone band, a reverberant room.

    python3 bench/conditions.py /tmp/cond --limit 120        # WAVs + one manifest per condition
    for c in asis quiet20 quiet40 loud pink20 pink10 phone reverb farroom; do
        python3 bench/peers.py --manifest /tmp/cond/$c/manifest.jsonl --systems claricodec,codec2-700c \
            --save-hyps $c.jsonl > $c.md
    done

Each condition is a folder of 16 kHz 16-bit WAVs (what a user's file would hold) with a
manifest of the same ids and transcripts, so `peers.py` scores the uncoded condition and
each codec on it side by side: what the codec loses under a condition is its WER minus
the uncoded WER of the same condition. Conditions (noise and rooms seeded by utterance):

- asis: the corpus audio as it is (active speech level about -35 to -17 dBFS on dev);
- quiet20 / quiet40: 20 / 40 dB quieter (a far or low-gain microphone; 40 dB down leaves
  16-bit quantisation noise ~50 dB below the speech);
- loud: peak normalised to -3 dBFS, then 12 dB of gain, clipped (an overdriven input);
- pink20 / pink10: pink noise 20 / 10 dB below the active speech level;
- phone: 8 kHz, 300-3400 Hz (a telephone channel), back at 16 kHz;
- reverb: a synthetic room (exponentially decaying noise, RT60 0.5 s, 10.5 dB below the
  direct path: a close microphone in an ordinary room);
- farroom: RT60 0.8 s, as loud as the direct path (a microphone across a bigger room).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = ROOT.parent / "shared" / "corpus" / "dev" / "manifest.jsonl"
RATE = 16000


def active_rms(audio: np.ndarray) -> float:
    """RMS of the louder half of 20 ms frames: the speech's level, not the pauses'."""
    frames = audio[: len(audio) // 320 * 320].reshape(-1, 320)
    energy = np.sort((frames ** 2).mean(axis=1))[len(frames) // 2:]
    return float(np.sqrt(energy.mean()))


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise with a 1/f power spectrum."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    bins = np.arange(len(spectrum))
    bins[0] = 1
    noise = np.fft.irfft(spectrum / np.sqrt(bins), n)
    return noise / np.sqrt((noise ** 2).mean())


def telephone(audio: np.ndarray) -> np.ndarray:
    narrow = soxr.resample(audio, RATE, 8000)
    spectrum = np.fft.rfft(narrow)
    freqs = np.fft.rfftfreq(len(narrow), 1 / 8000)
    spectrum[(freqs < 300) | (freqs > 3400)] = 0
    return soxr.resample(np.fft.irfft(spectrum, len(narrow)), 8000, RATE)


def reverberate(audio: np.ndarray, rng: np.random.Generator, rt60: float = 0.5, drr_db: float = 10.5) -> np.ndarray:
    """Convolve with a room made of decaying noise (60 dB down after rt60 seconds) whose
    energy is drr_db below a unit direct path; scaled back to the input's active level."""
    length = int(rt60 * RATE)
    t = np.arange(length) / RATE
    tail = rng.standard_normal(length) * 10 ** (-3 * t / rt60)
    tail[: int(0.002 * RATE)] = 0  # the first reflections come a little after the direct sound
    room = np.concatenate([[1.0], 10 ** (-drr_db / 20) * tail / np.sqrt((tail ** 2).sum())])
    wet = np.fft.irfft(np.fft.rfft(audio, len(audio) + len(room)) * np.fft.rfft(room, len(audio) + len(room)))
    wet = wet[: len(audio)]
    return wet * active_rms(audio) / max(active_rms(wet), 1e-9)


CONDITIONS = {
    "asis": lambda audio, rng: audio,
    "quiet20": lambda audio, rng: audio * 10 ** (-20 / 20),
    "quiet40": lambda audio, rng: audio * 10 ** (-40 / 20),
    "loud": lambda audio, rng: audio * (10 ** (-3 / 20) / max(np.abs(audio).max(), 1e-9)) * 10 ** (12 / 20),
    "pink20": lambda audio, rng: audio + pink_noise(len(audio), rng) * active_rms(audio) * 10 ** (-20 / 20),
    "pink10": lambda audio, rng: audio + pink_noise(len(audio), rng) * active_rms(audio) * 10 ** (-10 / 20),
    "phone": lambda audio, rng: telephone(audio),
    "reverb": reverberate,
    "farroom": lambda audio, rng: reverberate(audio, rng, rt60=0.8, drr_db=0.0),
}


def read_mono(path: str) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float64", always_2d=True)
    audio = audio.mean(axis=1)
    return soxr.resample(audio, rate, RATE) if rate != RATE else audio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for one subfolder per condition")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--limit", type=int, default=120, help="N utterances evenly spread through the manifest")
    parser.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated, from: " + ", ".join(CONDITIONS))
    args = parser.parse_args()
    names = args.conditions.split(",")
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown:
        parser.error(f"unknown condition(s) {', '.join(unknown)}")
    rows = [json.loads(line) for line in args.manifest.read_text().splitlines() if line.strip()]
    if args.limit and args.limit < len(rows):
        rows = [rows[i * len(rows) // args.limit] for i in range(args.limit)]
    base = args.manifest.parent
    for name in names:
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "manifest.jsonl", "w") as manifest:
            for i, row in enumerate(rows):
                audio = read_mono(str(base / row["path"]))
                coded = np.clip(CONDITIONS[name](audio, np.random.default_rng(i)), -1, 1)
                path = folder / f"{row['id']}.wav"
                sf.write(path, coded.astype(np.float32), RATE, subtype="PCM_16")
                manifest.write(json.dumps(dict(row, path=str(path.resolve()))) + "\n")
        print(f"{name}: {len(rows)} utterances in {folder}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
