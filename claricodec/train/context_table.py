"""Make a context table for an entropy-coded mode (claricodec/entropy.py): count which code
follows which in the encoder's codes of the train utterances, smooth the counts toward the
codes' overall frequencies, and round them to integer frequencies.

A table is made once and frozen with its mode (its sha256 pinned in entropy.py); a later
encoder's codes still code with it, at a slightly higher rate.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..entropy import TOTAL, ContextTable


def utterance_codes(codec, corpus, advance=None) -> list[np.ndarray]:
    """A Whisper-front codec's frame indices for each cached utterance, as encoding a file
    computes them (its head on the utterance's own cached states). `advance()` is called
    after each utterance (a progress bar)."""
    from .stage1 import encoder_latent
    q = codec.quantizer
    out = []
    with torch.no_grad():
        for i in range(len(corpus.index)):
            states = torch.from_numpy(corpus.teacher_frames(i))[None]
            out.append(q.to_index(q.argmax(q.bound(encoder_latent(codec, None, states))))[0].numpy())
            if advance:
                advance()
    return out


def count_pairs(sequences: list[np.ndarray], codebook_size: int) -> np.ndarray:
    """[C + 1, C + 1] counts of (code before, code); row C is the start, column C the end."""
    end = codebook_size
    counts = np.zeros((end + 1, end + 1), np.int64)
    for seq in sequences:
        seq = np.asarray(seq, np.int64)
        np.add.at(counts, (np.concatenate([[end], seq]), np.concatenate([seq, [end]])), 1)
    return counts


def build_table(counts: np.ndarray, prior: float) -> np.ndarray:
    """Integer frequencies from pair counts: each row's counts plus `prior` pseudo-counts
    spread as the codes' overall frequencies, scaled to TOTAL with every entry >= 1."""
    counts = np.asarray(counts, np.float64)
    overall = counts.sum(0) + 1.0
    overall /= overall.sum()
    p = (counts + prior * overall) / (counts.sum(1, keepdims=True) + prior)
    size = counts.shape[1]
    freqs = 1 + np.floor(p * (TOTAL - size)).astype(np.int64)
    rows = np.arange(len(freqs))
    freqs[rows, freqs.argmax(1)] += TOTAL - freqs.sum(1)  # the rounding's remainder
    return freqs


def bits_per_frame(sequences: list[np.ndarray], table: ContextTable) -> float:
    """What an arithmetic coder with `table` would send, end marks included, per frame."""
    log_total = math.log2(TOTAL)
    bits = frames = 0.0
    for seq in sequences:
        seq = np.asarray(seq, np.int64)
        before = np.concatenate([[table.end], seq])
        symbol = np.concatenate([seq, [table.end]])
        width = table.cumulative[before, symbol + 1] - table.cumulative[before, symbol]
        bits += float(np.sum(log_total - np.log2(width)))
        frames += len(seq)
    return bits / frames


def save_table(freqs: np.ndarray, path: Path, metadata: dict[str, str]) -> None:
    from safetensors.numpy import save_file
    ContextTable(freqs)  # refuses a malformed table
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"freqs": np.ascontiguousarray(freqs.astype(np.uint16))}, str(path), metadata=metadata)
