#!/usr/bin/env python3
"""What the per-segment search's winning draws have in common (session 23).

Encodes utterances with `--search N --search-segment 1` and, for every segment a draw won,
compares the winner with the other draws of that segment: the share of levels it moved off
the argmax, which way they moved (outward: to a level farther from zero; up: to a higher
level), and their log-probability under the policy. A systematic difference is something
an argmax encoder could learn (stage 2); a winner that only moved more codes is the search
picking the luckiest of several perturbations.

    python3 bench/heldout.py > /tmp/heldout200.jsonl
    python3 bench/search_winners.py /tmp/heldout200.jsonl --heat 1
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def segment_rows(quantizer, z: np.ndarray, levels: np.ndarray, winners: list[int], segment: int):
    """Per segment that holds signal: None where the argmax was kept, else the statistics
    of the winner and the mean of the other draws'. z [D, W]; levels [N, D, W] (draw 0 the
    argmax); frames outside the signal have z == 0."""
    import torch
    from claricodec.search import segment_spans
    L = quantizer.levels[0]
    centres = np.arange(L) - (L - 1) / 2  # the level values (quantizer.py)
    frames = int((z != 0).all(0).sum())  # the window's frames of signal come first
    for (lo, hi), won in zip(segment_spans(frames, segment, z.shape[-1]), winners):
        real = (z[:, lo:hi] != 0).all(0)
        if not real.any():
            continue
        if won == 0:
            yield None
            continue
        zz, argmax = z[:, lo:hi][:, real], levels[0][:, lo:hi][:, real]
        logp = torch.log_softmax(quantizer.logits(torch.from_numpy(zz)[None]), -1)[0].numpy()  # [D, T, L]
        stats = []
        for draw in levels[1:, :, lo:hi][:, :, real]:
            moved = draw != argmax
            n = moved.sum() if moved.any() else np.nan  # no move, no direction (not "none outward")
            stats.append([moved.mean(), ((np.abs(centres[draw]) > np.abs(centres[argmax])) & moved).sum() / n,
                          ((draw > argmax) & moved).sum() / n,
                          np.take_along_axis(logp, draw[..., None], -1).sum() / real.sum()])
        stats = np.array(stats)
        yield stats[won - 1], np.nanmean(np.delete(stats, won - 1, axis=0), 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path, help="manifest.jsonl (or a folder of audio)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N utterances")
    parser.add_argument("--search", type=int, default=8)
    parser.add_argument("--heat", type=float, default=1.0, help="the draws' temperature, x the policy's")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from claricodec.api import ClariCodec
    from claricodec.audio import load_audio
    from claricodec.train.data import read_manifest

    torch.set_num_threads(args.threads)
    codec = ClariCodec(search=args.search, search_segment=1.0, search_heat=args.heat)
    search, model = codec.search, codec.model
    windows = []  # (z, levels, winners) per analysis window
    draw, judge = search.candidate_levels, search.best

    def candidate_levels(window_audio, number, span=None):
        levels = draw(window_audio, number, span)
        z = model.window_latent(window_audio, span)[0].cpu().numpy()  # Whisper once more: a probe
        windows.append((z, levels.numpy(), []))
        return levels

    def best(original, decoded):
        won = judge(original, decoded)
        windows[-1][2].append(int(won))
        return won

    search.candidate_levels, search.best = candidate_levels, best
    utterances = read_manifest(args.manifest)[:args.limit]
    for n, row in enumerate(utterances, 1):
        codec.encode(load_audio(row["path"], codec.mode.sample_rate), codec.mode.sample_rate)
        if n % 20 == 0 or n == len(utterances):
            print(f"{n}/{len(utterances)} utterances", file=sys.stderr, flush=True)

    rows = [r for z, levels, won in windows
            for r in segment_rows(model.quantizer, z, levels, won, search.segment_frames)]
    pairs, segments = [r for r in rows if r is not None], len(rows)
    print(f"{segments} segments; a draw won {len(pairs)}, the argmax kept "
          f"{1 - len(pairs) / max(segments, 1):.1%} (chance {1 / args.search:.1%}); heat {args.heat:g}")
    if not pairs:
        return
    win, other = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    print("| statistic | winner | other draws | difference [95 % CI] | winner higher |")
    print("|---|---:|---:|---|---:|")
    for i, name in enumerate(("levels moved off the argmax", "moves outward", "moves up",
                              "log-probability a frame")):
        d = win[:, i] - other[:, i]
        d = d[~np.isnan(d)]
        half = 1.96 * d.std() / np.sqrt(len(d))
        print(f"| {name} | {np.nanmean(win[:, i]):.4f} | {np.nanmean(other[:, i]):.4f} | "
              f"{d.mean():+.4f} [{d.mean() - half:+.4f}, {d.mean() + half:+.4f}] | {np.mean(d > 0):.0%} |")


if __name__ == "__main__":
    main()
