#!/usr/bin/env python3
"""Dev validation mel of exported weights, two ways: over padded batches (how stage-1
validation took it up to session 8) and over each clip's own length (how it takes it now).

    python3 bench/validation_mel.py weights/ OTHER_WEIGHTS/
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

from claricodec.train.data import DEFAULT_CACHE, HOP
from claricodec.train.losses import MultiScaleMelLoss
from claricodec.train.stage1 import Corpus, validation_ids
from claricodec.weights import load_codec


@torch.no_grad()
def validation_mels(codec, dev: Corpus, mel: MultiScaleMelLoss) -> tuple[float, float]:
    ids = validation_ids(len(dev.index), 48)
    padded = own = 0.0
    rng = random.Random(1)  # as validation draws it
    for i in range(0, len(ids), 8):
        audio, _, frames, _ = dev.load(ids[i:i + 8], 8.0, rng, (0.0, 0.0))
        codes, _ = codec.quantizer.quantize_ste(codec.quantizer.bound(codec.encoder(audio)))
        fake = codec.decoder(codes)
        padded += mel(fake, audio).item() * len(frames)
        own += sum(mel(fake[b:b + 1, :n * HOP], audio[b:b + 1, :n * HOP]).item()
                   for b, n in enumerate(frames.tolist()))
    return padded / len(ids), own / len(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="+", type=Path, help="exported weights directories")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE / "data" / "dev")
    args = parser.parse_args()
    torch.set_num_threads(2)
    dev, mel = Corpus(args.cache), MultiScaleMelLoss()
    print("| weights | val mel, padded batches | val mel, each clip's own length |\n|---|---:|---:|")
    for path in args.weights:
        codec, info = load_codec(path)
        padded, own = validation_mels(codec.eval(), dev, mel)
        print(f"| {path} ({info.get('model_id')}) | {padded:.3f} | {own:.3f} |")


if __name__ == "__main__":
    main()
