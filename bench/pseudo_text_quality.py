#!/usr/bin/env python3
"""How right are `claricodec train pseudo-text`'s transcripts? The same transcription
(Whisper tiny.en, beam 5, the corpus's style) of utterances that do have a transcript,
scored against it, per source (the utterance id's prefix: an4, cathy, so762, ...).

    python3 bench/pseudo_text_quality.py                 # the train cache, 60 a source
    python3 bench/pseudo_text_quality.py --cache C --per-source 20

Prints a Markdown table: per source, utterances drawn, how many pseudo-text would drop
(digits, empty), and the WER of the rest against the real transcripts. Session 36 on the
shared corpus: arctic-cathy 5.3 %, speechocean762 29.1 %, an4 28.1 % (34 of 60 dropped).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from claricodec.asr import ASR, EVAL  # noqa: E402
from claricodec.textnorm import wer  # noqa: E402
from claricodec.train.data import CODEC_RATE, DEFAULT_CACHE, utterance_pcm  # noqa: E402
from claricodec.train.pseudo_text import MAX_SECONDS, corpus_style  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE / "data" / "train",
                        help="a prepared cache split (default: the train cache)")
    parser.add_argument("--per-source", type=int, default=60, help="utterances drawn a source")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    index = json.loads((args.cache / "index.json").read_text())
    audio = np.load(args.cache / "audio.npy", mmap_mode="r")
    by_source = defaultdict(list)
    for i, utt in enumerate(index):
        if utt.get("text") and utt["length"] <= MAX_SECONDS * CODEC_RATE:
            by_source[utt["id"].split("-")[0]].append(i)
    rng = random.Random(args.seed)
    asr = ASR(threads=args.threads)

    print("| source | transcribed | drawn | dropped | WER % of the rest |")
    print("|---|---:|---:|---:|---:|")
    for source, numbers in sorted(by_source.items()):
        drawn = rng.sample(numbers, min(args.per_source, len(numbers)))
        clips = [utterance_pcm(audio, index[i]) for i in drawn]
        refs, hyps = [], []
        for i, heard in zip(drawn, asr.texts(clips, EVAL)):
            text = corpus_style(heard)
            if text:
                refs.append(index[i]["text"].upper())
                hyps.append(text)
        score = wer(refs, hyps)
        shown = f"{100 * score:.1f}" if score is not None else "-"
        print(f"| {source} | {len(numbers)} | {len(drawn)} | {len(drawn) - len(refs)} | {shown} |",
              flush=True)


if __name__ == "__main__":
    main()
