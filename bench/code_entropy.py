#!/usr/bin/env python3
"""How many bits a frame do the codes need, if a receiver predicts each from the ones
before it? The bitstream sends 8 bits a frame whatever the codes are; an arithmetic coder
driven by a model of the code sequence would send about that model's cross-entropy.

A small context model (a GRU over the past frames; each FSQ dimension's level predicted from
that state and the frame's earlier dimensions) is fitted on train utterances' codes and
scored on dev's: its cross-entropy in bits a frame is a rate such a coder could reach
(plus a few bytes a file), an upper bound on what the codes need. A table of which code
follows which (integer counts, so every machine would code the same) is scored beside it.
Used by `content_ceiling.py --front`; on its own it scores the shipped codes (about 6
CPU-minutes):

    python3 bench/code_entropy.py --weights weights/
"""
from __future__ import annotations

import argparse
import math
import random

import torch
import torch.nn.functional as F
from torch import nn


class ContextModel(nn.Module):
    """p(code_t | codes before t) for FSQ codes with `levels` levels per dimension."""

    def __init__(self, levels: tuple[int, ...], hidden: int = 128):
        super().__init__()
        self.levels = tuple(levels)
        self.gru = nn.GRU(sum(levels), hidden, batch_first=True)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden + sum(levels[:d]), hidden), nn.GELU(), nn.Linear(hidden, n))
            for d, n in enumerate(levels))

    def bits(self, k: torch.Tensor) -> torch.Tensor:
        """Level indices [B, T, D] -> bits each frame costs [B, T]."""
        onehot = torch.cat([F.one_hot(k[..., d], n).float() for d, n in enumerate(self.levels)], -1)
        state, _ = self.gru(F.pad(onehot, (0, 0, 1, 0))[:, :-1])  # frame t sees frames < t only
        total, offset = 0, 0
        for d, (head, n) in enumerate(zip(self.heads, self.levels)):
            logits = head(torch.cat([state, onehot[..., :offset]], -1))
            total = total + F.cross_entropy(logits.transpose(1, 2), k[..., d], reduction="none")
            offset += n
        return total / math.log(2)


def pad_codes(items: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[T_i, D] level indices -> padded [B, T, D] and a mask [B, T] of real frames."""
    longest = max(len(x) for x in items)
    codes = torch.stack([F.pad(x, (0, 0, 0, longest - len(x))) for x in items])
    mask = torch.arange(longest)[None] < torch.tensor([len(x) for x in items])[:, None]
    return codes, mask


def flat_index(k: torch.Tensor, levels: tuple[int, ...]) -> torch.Tensor:
    """Level indices [T, D] -> one code number a frame [T] (the first dimension most significant)."""
    return (k * torch.tensor([math.prod(levels[d + 1:]) for d in range(len(levels))])).sum(1)


def unigram_bits(train: list[torch.Tensor], dev: list[torch.Tensor], levels: tuple[int, ...]) -> float:
    """Bits a frame with each code's frequency on train (add-one), no context: the entropy
    a coder of single frames would reach."""
    counts = torch.bincount(torch.cat([flat_index(x, levels) for x in train]), minlength=math.prod(levels))
    log_p = ((counts.double() + 1) / (counts.sum() + len(counts))).log2()
    return float(-log_p[torch.cat([flat_index(x, levels) for x in dev])].mean())


def bigram_bits(train: list[torch.Tensor], dev: list[torch.Tensor], levels: tuple[int, ...],
                prior: float = 64.0) -> float:
    """Bits a frame with a table of each code's frequency after the one before it (train
    counts, smoothed toward the frequencies alone with `prior` pseudo-counts): a model small
    and exact enough (integer counts) for a coder to run the same on every machine."""
    size = math.prod(levels)

    def follows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (code before, code) pairs
        index = flat_index(x, levels)
        return torch.cat([torch.tensor([size]), index[:-1]]), index  # `size`: a sequence's start

    pairs = torch.zeros(size + 1, size, dtype=torch.float64)
    for x in train:
        before, code = follows(x)
        pairs.index_put_((before, code), torch.ones(len(code), dtype=torch.float64), accumulate=True)
    single = pairs.sum(0) + 1
    p = (pairs + prior * single / single.sum()) / (pairs.sum(1, keepdim=True) + prior)
    total = frames = 0
    for x in dev:
        before, code = follows(x)
        total += float(-p[before, code].log2().sum())
        frames += len(code)
    return total / frames


def context_bits(train: list[torch.Tensor], dev: list[torch.Tensor], levels: tuple[int, ...],
                 steps: int = 800, batch: int = 32) -> float:
    """Fit a ContextModel on train codes ([T, D] level indices each), return dev bits a frame."""
    torch.manual_seed(0)
    model = ContextModel(levels)
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    rng = random.Random(2)
    for step in range(steps):
        codes, mask = pad_codes(rng.sample(train, batch))
        loss = (model.bits(codes) * mask).sum() / mask.sum()
        for group in opt.param_groups:
            group["lr"] = 3e-3 * (0.5 + 0.5 * math.cos(math.pi * step / steps))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        total = frames = 0
        for i in range(0, len(dev), 64):
            codes, mask = pad_codes(dev[i:i + 64])
            total += float((model.bits(codes) * mask).sum())
            frames += int(mask.sum())
    return total / frames


def main() -> None:
    from pathlib import Path

    from content_ceiling import front_codec_and_corpora, shipped_levels, teacher_frames, train_ids
    from claricodec.train.data import DEFAULT_CACHE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=None, help="ClariCodec weights directory")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE / "data",
                        help="folder holding the prepared train/ and dev/ caches (train prepare-front)")
    parser.add_argument("--utterances", type=int, default=3000, help="train utterances the models learn from")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    codec, info, train, dev = front_codec_and_corpora(args.weights, args.cache, "code_entropy.py")
    ids, dev_ids = train_ids(train, args.utterances), range(len(dev.index))
    levels = tuple(codec.mode.levels)
    codes_train = [shipped_levels(codec, teacher_frames(train, i)) for i in ids]
    codes_dev = [shipped_levels(codec, teacher_frames(dev, i)) for i in dev_ids]
    print(f"codes of {info.get('model_id')}, {len(ids)} train utterances, {len(dev_ids)} dev: "
          f"{math.log2(math.prod(levels)):.0f} bits a frame sent; dev, with each code's frequency: "
          f"{unigram_bits(codes_train, codes_dev, levels):.2f} bits; with a table of what follows each "
          f"code: {bigram_bits(codes_train, codes_dev, levels):.2f}; with the context model: "
          f"{context_bits(codes_train, codes_dev, levels):.2f}")


if __name__ == "__main__":
    main()
