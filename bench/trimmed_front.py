#!/usr/bin/env python3
"""Can the shipped encoder head learn to read Whisper states of a trimmed window?

    python3 bench/trimmed_front.py OUT [--pieces 4000] [--steps 1500] [--after 25]

Encoding runs Whisper tiny.en on a 12 s analysis window even for a 3 s file, which is most
of why encode + decode miss the design's 50x real time. A head with a trimmed front
(CodecConfig.front_window) has Whisper hear only the file and 1 s each side. This probe
teaches a copy of a full-window head (--weights; 72076fab, shipped until session 30), from
its own weights, to give on trimmed states the latents it gives on full windows
(self-distillation, mean squared error of the bounded latent), then writes OUT: a copy of
those weights with that head and a trimmed front, to score with `bench/peers.py --weights
OUT`. (Session 31 shipped a head trained on trimmed windows with the real losses.)

Data: `--pieces` train utterances outside bench/heldout200.ids, each a file of its own
(utterances over 10 s: a random 2-6 s crop, as long files are coded phrase by phrase).
Prints, every 250 steps, how many dev frames get the shipped head's code. Session 30:
81 % before training, 86 % after (89 % with --after 50), and held-out WER 2-3 points worse
than the shipped head's (docs/training.md).
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from claricodec import codec as codec_module  # noqa: E402
from claricodec.codec import CONTEXT, WINDOW  # noqa: E402
from claricodec.weights import load_codec, save_encoder, sha256_file  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"


def pieces(codec, split: str, count: int, after: int, seed: int = 300) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(trimmed-window states [1, 384, T], the shipped head's full-window latent [1, 4, T])."""
    held = set((ROOT / "bench" / "heldout200.ids").read_text().split())
    rows = [json.loads(line) for line in open(CORPUS / split / "manifest.jsonl")]
    rows = [r for r in rows if r["id"] not in held]
    rng = random.Random(seed)
    rng.shuffle(rows)
    hop, out = codec.mode.hop, []
    for row in rows[:count]:
        audio, _ = sf.read(CORPUS / split / row["path"], dtype="float32")
        if len(audio) > WINDOW * hop:
            n = rng.randint(50, 150) * hop
            start = rng.randint(0, len(audio) - n)
            audio = audio[start:start + n]
        frames = -(-len(audio) // hop)
        window = np.zeros((CONTEXT + WINDOW + CONTEXT) * hop, np.float32)
        window[CONTEXT * hop:CONTEXT * hop + len(audio)] = audio
        target = codec.window_latent(window, (CONTEXT, CONTEXT + frames))[:, :, :frames].clone()
        trimmed = torch.from_numpy(window[:(CONTEXT + frames + after) * hop])[None]
        states = codec.encoder.features(trimmed)[:, :, CONTEXT:CONTEXT + frames]
        out.append((states, target))
    return out


def agreement(head, q, dev) -> float:
    """The share of dev frames whose code (all 4 levels) is the shipped head's."""
    same = total = 0
    with torch.no_grad():
        for states, target in dev:
            same += (q.argmax(q.bound(head.from_features(states))) == q.argmax(target)).all(1).sum().item()
            total += target.shape[-1]
    return same / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="weights directory to write (replaced)")
    parser.add_argument("--pieces", type=int, default=4000, help="train utterances")
    parser.add_argument("--dev", type=int, default=617, help="dev utterances for the agreement")
    parser.add_argument("--steps", type=int, default=1500, help="steps of 16 utterances")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--after", type=int, default=CONTEXT, help="frames of zeros Whisper hears after the signal")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", type=Path, default=ROOT / "weights",
                        help="weights whose full-window head is copied (default: the shipped ones)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    codec_module.TRIMMED_AFTER = args.after  # read by window_latent and file_states when they run
    codec, _ = load_codec(args.weights)
    if codec.config.front_window != "full":
        # Since session 31 the shipped head reads trimmed windows itself; 72076fab read full
        # ones: `git worktree add /tmp/w72 7725c5e`, then --weights /tmp/w72/weights.
        sys.exit(f"{args.weights}: its head already reads {codec.config.front_window} windows; "
                 "give --weights a full-window one (72076fab: git worktree add /tmp/w72 7725c5e)")
    codec.eval()
    started = time.time()
    dev = pieces(codec, "dev", args.dev, args.after)
    train = pieces(codec, "train", args.pieces, args.after)
    print(f"{len(train)} train and {len(dev)} dev utterances in {time.time() - started:.0f} s", file=sys.stderr)
    q, head = codec.quantizer, copy.deepcopy(codec.encoder)
    print(f"step 0: {agreement(head, q, dev):.4f} of dev frames keep the shipped head's code", flush=True)
    optimizer = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    rng = np.random.default_rng(0)
    for step in range(1, args.steps + 1):
        optimizer.zero_grad()
        for i in rng.choice(len(train), 16, replace=False):  # one at a time: padding would move the codes
            states, target = train[i]
            (((q.bound(head.from_features(states)) - target) ** 2).mean() / 16).backward()
        optimizer.step()
        schedule.step()
        if step % 250 == 0 or step == args.steps:
            print(f"step {step}: {agreement(head, q, dev):.4f}", flush=True)
    codec.encoder = head
    shutil.rmtree(args.out, ignore_errors=True)
    shutil.copytree(args.weights, args.out, ignore=shutil.ignore_patterns("warmstart"))
    manifest = json.loads((args.out / "manifest.json").read_text())
    entry = manifest["encoders"][manifest.get("default_encoder", "stage1")]
    entry["sha256"] = save_encoder(codec, args.out / entry["file"])
    manifest["codec_config"]["front_window"] = "trimmed"
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    assert sha256_file(args.out / entry["file"]) == entry["sha256"]
    if args.after != CONTEXT:
        print(f"note: encoding reads TRIMMED_AFTER ({CONTEXT} frames) from claricodec/codec.py: "
              f"set it to {args.after} there to score this head", file=sys.stderr)
    print(f"wrote {args.out}; score it with: python3 bench/peers.py --weights {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
