#!/usr/bin/env python3
"""Native English read by several synthetic voices: a test set no checkpoint trained on.

    python3 bench/synth_speech.py /tmp/synth          # writes WAVs + manifest.jsonl
    python3 bench/peers.py --manifest /tmp/synth --judge sphinx
    python3 bench/synth_speech.py /tmp/hello --sentence "The quick brown fox jumped over the lazy dog. Please call me back at 7."

The corpus has no native read English outside `train` (dev is speechocean762 and AN4), so
this is the nearest stand-in for a newcomer's own sentence: 20 Harvard sentences (IEEE
1969, public domain; or your own, `--sentence`) spoken by every voice found among flite
(slt, rms, awb, kal16), festival's HTS voice of CMU ARCTIC slt, and espeak-ng (en-us, a
male and a female variant). Each voice is a `source` in the manifest, so the reports split
by voice. Synthetic speech is not human speech (espeak-ng's formant synthesis least of
all); read the figures as a check beside dev. Debian packages: flite festival
festvox-us-slt-hts espeak-ng.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import soundfile as sf

HARVARD = [  # lists 1 and 2
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
]


def flite(voice: str):
    return "flite", lambda text, out: ["flite", "-voice", voice, "-t", text, "-o", str(out)]


def festival_hts_slt(text: str, out: Path) -> list[str]:
    return ["text2wave", "-eval", "(voice_cmu_us_slt_arctic_hts)", "-o", str(out)]  # text on stdin


def espeak(variant: str):
    return "espeak-ng", lambda text, out: ["espeak-ng", "-v", variant, "-w", str(out), text]


VOICES = {
    "flite-slt": flite("slt"),
    "flite-rms": flite("rms"),
    "flite-awb": flite("awb"),
    "flite-kal16": flite("kal16"),
    "festival-slt-hts": ("text2wave", festival_hts_slt),
    "espeak-us-m": espeak("en-us"),
    "espeak-us-f": espeak("en-us+f3"),
}


def words(text: str) -> str:
    """The manifest's transcript form: upper-case words, apostrophes kept."""
    return " ".join("".join(c for c in w if c.isalpha() or c == "'") for w in text.upper().split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the WAVs and manifest.jsonl")
    parser.add_argument("--sentence", action="append", default=None,
                        help="speak this instead of the Harvard sentences (repeatable)")
    args = parser.parse_args()
    sentences = args.sentence or HARVARD
    voices = {name: build for name, (tool, build) in VOICES.items() if shutil.which(tool)}
    if not voices:
        sys.exit("synth_speech.py: none of flite, text2wave (festival), espeak-ng found")
    if missing := sorted(set(VOICES) - set(voices)):
        print(f"synth_speech.py: skipping {', '.join(missing)} (not installed)", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for voice, build in voices.items():
        for n, text in enumerate(sentences, 1):
            path = args.out / f"{voice}-{n:02d}.wav"
            # The text also goes to stdin, where festival reads it (flite and espeak-ng take it as an argument).
            subprocess.run(build(text, path), input=text + "\n", text=True, check=True, capture_output=True)
            rows.append({"id": path.stem, "path": path.name, "source": voice, "speaker": voice,
                         "text": words(text), "license": "synthetic (Harvard sentences, public domain)",
                         "seconds": round(sf.info(path).duration, 3)})
    with open(args.out / "manifest.jsonl", "w") as manifest:
        manifest.writelines(json.dumps(row) + "\n" for row in rows)
    print(f"{len(rows)} utterances, {len(voices)} voices, "
          f"{sum(r['seconds'] for r in rows) / 60:.1f} minutes -> {args.out / 'manifest.jsonl'}")


if __name__ == "__main__":
    main()
