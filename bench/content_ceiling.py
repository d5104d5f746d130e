#!/usr/bin/env python3
"""Where the words are lost: read characters off three kinds of 25 Hz frames with the same
small CTC head, trained from scratch on the same train utterances, scored on all of dev.

1. ClariCodec's 8-bit codes (the shipped encoder);
2. k-means-256 units of the Whisper tiny.en teacher features (8 bits too: a "semantic
   token" made by clustering instead of training);
3. the teacher features themselves (384 floats a frame: what the codes are distilled from).

The gap between 3 and 1 is what the 8-bit bottleneck costs; 2 against 1 says whether
clustering the teacher would be a better encoder than the trained one. Needs the prepared
caches (`claricodec train prepare`); about 35 CPU-minutes with the defaults.

    python3 bench/content_ceiling.py --weights weights/

With --context it reads only the codes, twice: with that head (~0.7 s of context) and with a
whole-utterance one (a bidirectional LSTM before it), to tell words lost in the codes from
words a longer view could recover (about 17 CPU-minutes). With --bottleneck it reads only the
teacher features squeezed through an 8-bit FSQ code trained for content alone: how many
words 200 bit/s can carry at all (about 8 CPU-minutes).
"""
from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from code_content import greedy_ctc

from claricodec.layers import blocks
from claricodec.quantizer import FSQPolicy
from claricodec.textnorm import cer
from claricodec.train.data import DEFAULT_CACHE, HOP
from claricodec.train.stage1 import CHARS, Corpus, text_to_targets
from claricodec.weights import load_codec

UNITS = 256


def teacher_frames(corpus: Corpus, i: int) -> torch.Tensor:
    utt = corpus.index[i]
    first = utt["offset"] // HOP
    return torch.from_numpy(np.asarray(corpus.teacher[first:first + utt["length"] // HOP],
                                       dtype=np.float32))


def kmeans(frames: torch.Tensor, k: int, gen: torch.Generator, iterations: int = 20) -> torch.Tensor:
    """Centroids [k, D] by Lloyd's algorithm from k random frames."""
    centroids = frames[torch.randperm(len(frames), generator=gen)[:k]].clone()
    for _ in range(iterations):
        nearest = torch.cdist(frames, centroids).argmin(1)
        sums = torch.zeros_like(centroids).index_add_(0, nearest, frames)
        counts = torch.bincount(nearest, minlength=k).unsqueeze(1)
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    return centroids


@torch.no_grad()
def codec_indices(codec, corpus: Corpus, i: int) -> torch.Tensor:
    """The encoder's code indices for one utterance, one per teacher frame."""
    utt = corpus.index[i]
    audio = np.asarray(corpus.audio[utt["offset"]:utt["offset"] + utt["length"]], dtype=np.float32)
    q = codec.quantizer
    _, levels = q.quantize_ste(q.bound(codec.encoder(torch.from_numpy(audio / 32768)[None])))
    index = q.to_index(levels)[0]
    frames = utt["length"] // HOP
    return F.pad(index, (0, max(0, frames - len(index))))[:frames]


class FSQBottleneck(nn.Module):
    """Feature vectors [B, T, F] -> the codec's own 8-bit FSQ (4 dims x 4 levels, rounded,
    straight-through) -> [B, T, dim]: an 8-bit code trained for content alone."""

    def __init__(self, feature_dim: int, dim: int):
        super().__init__()
        self.quantizer = FSQPolicy((4, 4, 4, 4))
        self.encode = nn.Sequential(nn.Conv1d(feature_dim, dim, 1), blocks(dim, 2),
                                    nn.Conv1d(dim, self.quantizer.dim, 1))
        self.decode = nn.Conv1d(self.quantizer.dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.quantizer.bound(self.encode(x.transpose(1, 2)))
        codes, _ = self.quantizer.quantize_ste(z)
        return self.decode(codes).transpose(1, 2)


class ReadOutHead(nn.Module):
    """The stage-1 CTC head's shape (about 0.7 s of context), on unit indices (embedded) or
    on feature vectors. utterance_context=True puts a 2-layer bidirectional LSTM before it,
    so every frame is read with the whole utterance around it."""

    def __init__(self, feature_dim: int | None, dim: int = 192, utterance_context: bool = False,
                 bottleneck: bool = False):
        super().__init__()
        if bottleneck:
            self.embed = FSQBottleneck(feature_dim, dim)
        else:
            self.embed = nn.Embedding(UNITS, dim) if feature_dim is None else nn.Linear(feature_dim, dim)
        self.context = nn.LSTM(dim, dim // 2, num_layers=2, batch_first=True,
                               bidirectional=True) if utterance_context else None
        self.body = nn.Sequential(nn.Conv1d(dim, dim, 5, padding=2), blocks(dim, 2),
                                  nn.Conv1d(dim, len(CHARS) + 1, 1))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:  # [B, T(, D)] -> [B, C, T]
        h = self.embed(x)
        if self.context is not None:  # packed: the backward pass starts at each real end, not in padding
            packed = nn.utils.rnn.pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
            h = nn.utils.rnn.pad_packed_sequence(self.context(packed)[0], batch_first=True,
                                                 total_length=h.shape[1])[0]
        return self.body(h.transpose(1, 2))


def pad_batch(items: list[torch.Tensor]) -> torch.Tensor:
    longest = max(len(x) for x in items)
    return torch.stack([F.pad(x, (0, 0, 0, longest - len(x)) if x.dim() == 2 else (0, longest - len(x)))
                        for x in items])


def train_and_read(train_x, train_texts, dev_x, dev_texts, feature_dim, steps, batch,
                   utterance_context: bool = False, bottleneck: bool = False) -> float:
    """Train a fresh head with CTC, then its greedy read-out CER (%) on dev."""
    torch.manual_seed(0)
    head = ReadOutHead(feature_dim, utterance_context=utterance_context, bottleneck=bottleneck)
    opt = torch.optim.AdamW(head.parameters(), 1e-3)
    rng = random.Random(1)
    for step in range(steps):
        pick = rng.sample(range(len(train_x)), batch)
        targets = [torch.tensor(text_to_targets(train_texts[j])) for j in pick]
        lengths = torch.tensor([len(train_x[j]) for j in pick])
        log_probs = head(pad_batch([train_x[j] for j in pick]), lengths).permute(2, 0, 1).log_softmax(-1)
        loss = F.ctc_loss(log_probs, torch.cat(targets), lengths,
                          torch.tensor([len(t) for t in targets]), zero_infinity=True)
        for group in opt.param_groups:  # 100-step warm-up, then cosine
            group["lr"] = 1e-3 * min(1, (step + 1) / 100) * (0.5 + 0.5 * np.cos(np.pi * step / steps))
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    with torch.no_grad():
        hyps = [greedy_ctc(head(x[None], torch.tensor([len(x)]))[0]) for x in dev_x]
    return 100 * cer(dev_texts, hyps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=None, help="ClariCodec weights directory")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE / "data",
                        help="folder holding the prepared train/ and dev/ caches")
    parser.add_argument("--utterances", type=int, default=3000, help="train utterances (up to 8 s, with text)")
    parser.add_argument("--steps", type=int, default=1500, help="training steps per head")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--context", action="store_true",
                        help="read the codes only, with the local head and with a whole-utterance "
                             "(BiLSTM) head: are words lost in the codes, or recoverable from context?")
    parser.add_argument("--bottleneck", action="store_true",
                        help="only the teacher features squeezed through an 8-bit FSQ code trained "
                             "for content alone (CTC), then the same head: the most words 8 bits "
                             "a frame can carry, for this reader")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, dev = Corpus(args.cache / "train"), Corpus(args.cache / "dev")
    if train.teacher is None or dev.teacher is None:
        raise SystemExit("content_ceiling.py: the caches have no teacher features (claricodec train prepare)")
    ids = [i for i, u in enumerate(train.index) if u.get("text") and u["length"] <= 8 * 16000]
    random.Random(0).shuffle(ids)
    ids = ids[:args.utterances]
    dev_ids = [i for i, u in enumerate(dev.index) if u.get("text")]
    train_texts = [train.index[i]["text"] for i in ids]
    dev_texts = [dev.index[i]["text"] for i in dev_ids]
    start = time.time()

    if args.context:
        read_codes_with_context(args, train, dev, ids, dev_ids, train_texts, dev_texts, start)
        return
    teacher_train = [teacher_frames(train, i) for i in ids]
    teacher_dev = [teacher_frames(dev, i) for i in dev_ids]
    if args.bottleneck:
        print(f"{len(ids)} train utterances, {len(dev_ids)} dev; {args.steps} steps of {args.batch}; "
              f"greedy CTC read-out, no language model\n")
        result = train_and_read(teacher_train, train_texts, teacher_dev, dev_texts, teacher_train[0].shape[1],
                                args.steps, args.batch, bottleneck=True)
        print(f"| Whisper tiny.en features -> 8-bit FSQ trained for content (CTC) alone | 8 bits | {result:.1f} |")
        print(f"\n{time.time() - start:.0f} s")
        return
    every = torch.cat(teacher_train)
    gen = torch.Generator().manual_seed(0)
    sample = every[torch.randperm(len(every), generator=gen)[:100_000]]
    centroids = kmeans(sample, UNITS, gen)
    units_train = [torch.cdist(t, centroids).argmin(1) for t in teacher_train]
    units_dev = [torch.cdist(t, centroids).argmin(1) for t in teacher_dev]
    codec, info = load_codec(args.weights)
    codec.eval()
    codes_train = [codec_indices(codec, train, i) for i in ids]
    codes_dev = [codec_indices(codec, dev, i) for i in dev_ids]

    seconds = sum(train.index[i]["length"] for i in ids) / 16000
    print(f"{len(ids)} train utterances ({seconds / 3600:.1f} h), {len(dev_ids)} dev; head trained "
          f"{args.steps} steps of {args.batch}; greedy CTC read-out, no language model\n")
    print("| 25 Hz frames | per frame | dev CER % |\n|---|---|---:|")
    for name, size, x_train, x_dev, dim in (
            (f"ClariCodec codes ({info.get('model_id')})", "8 bits", codes_train, codes_dev, None),
            (f"Whisper tiny.en features, k-means {UNITS}", "8 bits", units_train, units_dev, None),
            ("Whisper tiny.en features", "384 floats", teacher_train, teacher_dev, every.shape[1])):
        result = train_and_read(x_train, train_texts, x_dev, dev_texts, dim, args.steps, args.batch)
        print(f"| {name} | {size} | {result:.1f} |", flush=True)
    print(f"\n{time.time() - start:.0f} s")


def read_codes_with_context(args, train, dev, ids, dev_ids, train_texts, dev_texts, start) -> None:
    codec, info = load_codec(args.weights)
    codec.eval()
    codes_train = [codec_indices(codec, train, i) for i in ids]
    codes_dev = [codec_indices(codec, dev, i) for i in dev_ids]
    print(f"{len(ids)} train utterances, {len(dev_ids)} dev; ClariCodec codes ({info.get('model_id')}); "
          f"heads trained {args.steps} steps of {args.batch}; greedy CTC read-out, no language model\n")
    print("| reader | context | dev CER % |\n|---|---|---:|")
    for name, context, utterance in (("conv (the stage-1 head's shape)", "~0.7 s", False),
                                     ("2-layer BiLSTM + the same conv", "whole utterance", True)):
        result = train_and_read(codes_train, train_texts, codes_dev, dev_texts, None, args.steps,
                                args.batch, utterance_context=utterance)
        print(f"| {name} | {context} | {result:.1f} |", flush=True)
    print(f"\n{time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
