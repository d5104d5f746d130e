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

With --front (a Whisper-front codec, `claricodec train prepare-front` run) every row reads the
states the codec's head reads (front.npy): the shipped codes, codes of other shapes trained
for content alone from those states with the head's own shape (`--codes 8 16/2 12`: bits a
code, and frames a code spans), and the states themselves; each code row also says how many
bits a frame an entropy coder would need for it (code_entropy.py). About 15-20 minutes a row
on 2 threads.
"""
from __future__ import annotations

import argparse
import math
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
from claricodec.train.stage1 import CHARS, Corpus, encoder_latent, text_to_targets
from claricodec.weights import load_codec
from claricodec.whisper_front import WhisperFrontEncoder

UNITS = 256


def train_ids(train: Corpus, count: int) -> list[int]:
    """The probe's train utterances: `count` with a transcript, up to 8 s, shuffled with a fixed seed."""
    ids = [i for i, u in enumerate(train.index) if u.get("text") and u["length"] <= 8 * 16000]
    random.Random(0).shuffle(ids)
    return ids[:count]


def teacher_frames(corpus: Corpus, i: int) -> torch.Tensor:
    """One utterance's cached frames [T, D] from the corpus's teacher file: the teacher
    features, or the Whisper-front states (front.npy) as encoding a file computes them."""
    return torch.from_numpy(corpus.teacher_frames(i))


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
    """Feature vectors [B, T, F] -> an FSQ code of 4 levels a dimension (rounded,
    straight-through) -> [B, T, dim]: a code trained for content alone. One code per
    `frames_per_code` 25 Hz frames, of `bits` bits (default 8 per frame it spans: 200 bit/s).
    `shipped_shape`: the encoder is the Whisper-front head's shape
    (whisper_front.WhisperFrontEncoder), not the small probe encoder."""

    def __init__(self, feature_dim: int, dim: int, frames_per_code: int = 1, shipped_shape: bool = False,
                 bits: int | None = None):
        super().__init__()
        self.frames_per_code = frames_per_code
        self.quantizer = FSQPolicy((4,) * ((bits or 8 * frames_per_code) // 2))
        if shipped_shape:
            self.encode = WhisperFrontEncoder(latent_dim=self.quantizer.dim).head
        else:
            self.encode = nn.Sequential(nn.Conv1d(feature_dim, dim, 1), blocks(dim, 2),
                                        nn.Conv1d(dim, self.quantizer.dim, 1))
        self.decode = nn.Conv1d(self.quantizer.dim, dim * frames_per_code, 1)

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, F] -> bounded latent [B, D, T / k]."""
        h = x.transpose(1, 2)
        if self.frames_per_code > 1:  # one code per k frames: their mean in, k frames back out of each code
            h = F.avg_pool1d(F.pad(h, (0, -x.shape[1] % self.frames_per_code)), self.frames_per_code)
        return self.quantizer.bound(self.encode(h))

    @torch.no_grad()
    def levels(self, x: torch.Tensor) -> torch.Tensor:
        """One utterance's features [T, F] -> its codes' level indices [T / k, D]."""
        return self.quantizer.argmax(self.latent(x[None]))[0].T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames, k = x.shape[1], self.frames_per_code
        codes, _ = self.quantizer.quantize_ste(self.latent(x))
        out = self.decode(codes)  # [B, dim * k, T / k]
        out = out.view(len(x), k, -1, out.shape[-1]).permute(0, 3, 1, 2).reshape(len(x), -1, out.shape[1] // k)
        return out[:, :frames]


class ShippedPlusCode(nn.Module):
    """The shipped code's index (embedded) plus an extra FSQ code of `bits` bits made from the
    same frame's states by a head of the shipped head's shape, trained for content (CTC)
    alone with its reader: what extra bits beside the shipped 8 carry. Input [B, T, 1 + F]:
    the shipped index (as a float) before the states."""

    def __init__(self, feature_dim: int, dim: int, bits: int):
        super().__init__()
        self.index = nn.Embedding(UNITS, dim)
        self.extra = FSQBottleneck(feature_dim, dim, shipped_shape=True, bits=bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.index(x[..., 0].long()) + self.extra(x[..., 1:])

    @torch.no_grad()
    def levels(self, x: torch.Tensor) -> torch.Tensor:
        """One utterance [T, 1 + F] -> the extra code's level indices [T, D]."""
        return self.extra.levels(x[:, 1:])


class ReadOutHead(nn.Module):
    """The stage-1 CTC head's shape (about 0.7 s of context), on unit indices (embedded) or
    on feature vectors. utterance_context=True puts a 2-layer bidirectional LSTM before it,
    so every frame is read with the whole utterance around it."""

    def __init__(self, feature_dim: int | None, dim: int = 192, utterance_context: bool = False,
                 bottleneck: dict | None = None):
        super().__init__()
        if bottleneck is not None and "plus_bits" in bottleneck:
            self.embed = ShippedPlusCode(feature_dim - 1, dim, bottleneck["plus_bits"])
        elif bottleneck is not None:  # FSQBottleneck's options
            self.embed = FSQBottleneck(feature_dim, dim, **bottleneck)
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
                   utterance_context: bool = False, bottleneck: dict | None = None) -> tuple[float, nn.Module]:
    """Train a fresh head with CTC; its greedy read-out CER (%) on dev, and the head."""
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
    return 100 * cer(dev_texts, hyps), head


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
    parser.add_argument("--front", action="store_true",
                        help="for a Whisper-front codec: its codes against codes trained for content "
                             "alone from the very states its head reads (see --codes)")
    parser.add_argument("--codes", nargs="+", default=["shipped", "8", "16/2", "states"],
                        help="with --front: the rows. shipped: the weights' own codes. BITS[/FRAMES]: a code "
                             "trained for content alone, BITS a code (2 a dimension), one code per "
                             "FRAMES 25 Hz frames (default 1; 8 bits a frame is 200 bit/s); states: "
                             "the states themselves; shipped+BITS: the shipped codes plus a code of BITS "
                             "bits trained for content alone beside them")
    parser.add_argument("--bottleneck", action="store_true",
                        help="only the teacher features squeezed through an 8-bit FSQ code trained "
                             "for content alone (CTC), then the same head: the most words 8 bits "
                             "a frame can carry, for this reader")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, dev = Corpus(args.cache / "train"), Corpus(args.cache / "dev")
    if train.teacher is None or dev.teacher is None:
        raise SystemExit("content_ceiling.py: the caches have no teacher features (claricodec train prepare)")
    ids = train_ids(train, args.utterances)
    dev_ids = [i for i, u in enumerate(dev.index) if u.get("text")]
    train_texts = [train.index[i]["text"] for i in ids]
    dev_texts = [dev.index[i]["text"] for i in dev_ids]
    start = time.time()

    if args.context:
        read_codes_with_context(args, train, dev, ids, dev_ids, train_texts, dev_texts, start)
        return
    if args.front:
        read_front(args, ids, dev_ids, train_texts, dev_texts, start)
        return
    teacher_train = [teacher_frames(train, i) for i in ids]
    teacher_dev = [teacher_frames(dev, i) for i in dev_ids]
    if args.bottleneck:
        print(f"{len(ids)} train utterances, {len(dev_ids)} dev; {args.steps} steps of {args.batch}; "
              f"greedy CTC read-out, no language model\n")
        result, _ = train_and_read(teacher_train, train_texts, teacher_dev, dev_texts, teacher_train[0].shape[1],
                                   args.steps, args.batch, bottleneck={})
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
        result, _ = train_and_read(x_train, train_texts, x_dev, dev_texts, dim, args.steps, args.batch)
        print(f"| {name} | {size} | {result:.1f} |", flush=True)
    print(f"\n{time.time() - start:.0f} s")


def shipped_levels(codec, x: torch.Tensor) -> torch.Tensor:
    """The Whisper-front codec's code levels [T, D] for one utterance's states [T, 384], as
    training computes them (its head on the cached states)."""
    with torch.no_grad():
        q = codec.quantizer
        return q.argmax(q.bound(encoder_latent(codec, None, x[None])))[0].T


def front_codec_and_corpora(weights: Path | None, cache: Path, script: str):
    """The Whisper-front codec of `weights` (eval mode), its info, and the train and dev
    corpora of its cached states (front.npy); anything missing is a one-line exit."""
    for split in ("train", "dev"):
        if not (cache / split / "index.json").is_file():
            raise SystemExit(f"{script}: no prepared {split} cache in {cache} (claricodec train prepare)")
    train, dev = Corpus(cache / "train", "front.npy"), Corpus(cache / "dev", "front.npy")
    if train.teacher is None or dev.teacher is None:
        raise SystemExit(f"{script}: the caches have no front states (claricodec train prepare-front)")
    codec, info = load_codec(weights)
    if not getattr(codec.encoder, "reads_features", False):
        raise SystemExit(f"{script}: these weights are not a Whisper-front codec")
    return codec.eval(), info, train, dev


def read_front(args, ids, dev_ids, train_texts, dev_texts, start) -> None:
    """The Whisper-front codec's codes against content-only codes from the same states: the
    read-out CER of each, and the bits a frame each would need with an entropy coder."""
    from code_entropy import bigram_bits, context_bits, flat_index, unigram_bits
    codec, info, train, dev = front_codec_and_corpora(args.weights, args.cache, "content_ceiling.py --front")
    front_train = [teacher_frames(train, i) for i in ids]
    front_dev = [teacher_frames(dev, i) for i in dev_ids]
    levels = tuple(codec.mode.levels)
    dim = front_train[0].shape[1]
    print(f"{len(ids)} train utterances, {len(dev_ids)} dev; Whisper-front states (front.npy); heads "
          f"trained {args.steps} steps of {args.batch}; greedy CTC read-out, no language model. "
          f"Bits a 25 Hz frame: sent as they are; with a coder that knows each code's frequency; "
          f"with one that predicts each code from the ones before it (code_entropy.py)\n")
    print("| frames | code | dev CER % | bits a frame: sent | frequencies | context |\n"
          "|---|---|---:|---:|---:|---:|")

    def report(name, code, result, per_frame, k=1, level_sets=None, code_levels=()):
        if level_sets is None:
            print(f"| {name} | {code} | {result:.1f} | {per_frame} | | |", flush=True)
            return
        rates = [unigram_bits(*level_sets, code_levels) / k, context_bits(*level_sets, code_levels) / k]
        print(f"| {name} | {code} | {result:.1f} | {per_frame:g} | {rates[0]:.2f} | {rates[1]:.2f} |", flush=True)

    for spec in args.codes:
        if spec == "shipped":
            shipped = [[shipped_levels(codec, x) for x in xs] for xs in (front_train, front_dev)]
            result, _ = train_and_read([flat_index(c, levels) for c in shipped[0]], train_texts,
                                       [flat_index(c, levels) for c in shipped[1]], dev_texts, None, args.steps, args.batch)
            report(f"ClariCodec codes ({info.get('model_id')}), the shipped head", "25 Hz x 8 bits", result,
                   math.log2(math.prod(levels)), 1, shipped, levels)
            continue
        if spec.startswith("shipped+"):  # the shipped codes plus an extra content-only code
            bits = int(spec.partition("+")[2])
            shipped = [[shipped_levels(codec, x) for x in xs] for xs in (front_train, front_dev)]
            paired = [[torch.cat([flat_index(c, levels)[:, None].float(), x], 1) for c, x in zip(cs, xs)]
                      for cs, xs in zip(shipped, (front_train, front_dev))]
            result, head = train_and_read(paired[0], train_texts, paired[1], dev_texts, dim + 1, args.steps,
                                          args.batch, bottleneck={"plus_bits": bits})
            both = [[torch.cat([c, head.embed.levels(x)], 1) for c, x in zip(cs, xs)]
                    for cs, xs in zip(shipped, paired)]
            both_levels = levels + head.embed.extra.quantizer.levels
            report(f"the shipped codes + {bits} bits trained for content (CTC) alone", f"25 Hz x {8 + bits} bits",
                   result, 8 + bits, 1, both, both_levels)
            print(f"  with a table of which code follows which: {bigram_bits(*both, both_levels):.2f} bits a frame "
                  f"(the shipped codes alone: {bigram_bits(*shipped, levels):.2f})", flush=True)
            continue
        if spec == "states":
            result, _ = train_and_read(front_train, train_texts, front_dev, dev_texts, dim, args.steps, args.batch)
            report("the states themselves", "25 Hz x 384 floats", result, "-")
            continue
        bits, _, frames = spec.partition("/")
        bits, k = int(bits), int(frames or 1)
        result, head = train_and_read(front_train, train_texts, front_dev, dev_texts, dim, args.steps, args.batch,
                                      bottleneck={"frames_per_code": k, "shipped_shape": True, "bits": bits})
        level_sets = [[head.embed.levels(x) for x in xs] for xs in (front_train, front_dev)]
        report("states -> the shipped head's shape -> FSQ, trained for content (CTC) alone",
               f"{25 / k:g} Hz x {bits} bits", result, bits / k, k, level_sets, head.embed.quantizer.levels)
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
        result, _ = train_and_read(codes_train, train_texts, codes_dev, dev_texts, None, args.steps,
                                   args.batch, utterance_context=utterance)
        print(f"| {name} | {context} | {result:.1f} |", flush=True)
    print(f"\n{time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
