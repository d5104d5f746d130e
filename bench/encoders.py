#!/usr/bin/env python3
"""ClariCodec encoders side by side: stage 1, the RL encoder and the control run's.

Stage 2 is done when the RL encoder's dev WER is at least 10 % (relative) below the
stage-1 encoder's, and below a control run's (same steps and losses, reward off). This
runs every encoder on the same utterances in one run (one transcript of the original,
the same ASR settings: beam 5, 30 s window, unlike the greedy reward) and prints:

  * WER / CER and a quality figure per encoder, overall and per source. Quality is the
    multi-scale log-mel L1 distance of the decoded audio from the original (the stage-1
    reconstruction loss; lower is better), so a WER gain bought with worse sound shows.
  * each encoder against the first: WER difference in points with a paired bootstrap
    95 % interval, and the relative change.

    python3 bench/encoders.py stage1 rl ~/.cache/claricodec/runs/stage2-control/encoder-control.safetensors \\
        --names stage1,rl,control
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = ROOT.parent / "shared" / "corpus" / "dev" / "manifest.jsonl"


class MeasuredEncoder:
    """A ClariCodec system (real .cc file) that also records each clip's mel distance."""

    def __init__(self, codec, name: str, mel_loss):
        from claricodec.evaluate import ClariCodecSystem
        self.inner = ClariCodecSystem(codec, name)
        self.name, self.nominal_bps = name, self.inner.nominal_bps
        self.mel_loss, self.mel = mel_loss, {}

    def code(self, audio: np.ndarray, workdir: Path, stem: str):
        coded = self.inner.code(audio, workdir, stem)
        n = min(len(audio), len(coded.audio))
        with torch.no_grad():
            distance = self.mel_loss(torch.from_numpy(coded.audio[:n])[None],
                                     torch.from_numpy(audio[:n].astype(np.float32))[None])
        self.mel[stem] = (float(distance), n)
        return coded


def mel_by_group(system: MeasuredEncoder, stems_by_group: dict[str, list[str]]) -> dict[str, float]:
    """Duration-weighted mean mel distance per group."""
    out = {}
    for group, stems in stems_by_group.items():
        values = np.array([system.mel[s][0] for s in stems])
        weights = np.array([system.mel[s][1] for s in stems], dtype=float)
        out[group] = float((values * weights).sum() / weights.sum()) if len(stems) else float("nan")
    return out


def comparison(results, first: str, other: str, resamples: int = 2000) -> dict:
    """WER(other) - WER(first) in points, its paired-bootstrap 95 % interval, relative change."""
    from claricodec.evaluate import errors_of, wer_difference
    base, errs = errors_of(results, first), errors_of(results, other)
    diff, low, high = wer_difference(errs, base, resamples)
    base_errors = sum(e.word_errors for e in base)
    return {"diff": 100 * diff, "low": 100 * low, "high": 100 * high,
            "relative": 100 * (sum(e.word_errors for e in errs) - base_errors) / base_errors
            if base_errors else float("nan")}


def markdown(summary: dict, mel: dict[str, dict[str, float]], names: list[str], comparisons: dict) -> str:
    def pct(v):
        return "–" if v is None else f"{100 * v:.1f}"

    head = "| set | utterances | uncoded WER / CER | " + " | ".join(
        f"{n} WER / CER | {n} mel" for n in names) + " |"
    lines = [head, "|" + "---|" * (3 + 2 * len(names))]
    for group, g in summary.items():
        s = g["systems"]
        cells = [f"{pct(s['original']['wer'])} / {pct(s['original']['cer'])}"]
        for n in names:
            cells += [f"{pct(s[n]['wer'])} / {pct(s[n]['cer'])}", f"{mel[n][group]:.3f}"]
        lines.append(f"| {group} | {g['utterances']} | " + " | ".join(cells) + " |")
    lines += ["", f"| encoder - {names[0]} | set | WER difference, points | 95% CI | relative | verdict |",
              "|---|---|---:|---|---:|---|"]
    for (name, group), c in comparisons.items():
        verdict = (f"{name} lower" if c["high"] < 0 else
                   f"{names[0]} lower" if c["low"] > 0 else "not distinguishable")
        lines.append(f"| {name} | {group} | {c['diff']:+.1f} | [{c['low']:+.1f}, {c['high']:+.1f}] "
                     f"| {c['relative']:+.1f} % | {verdict} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="ClariCodec encoders side by side: WER, CER, mel distance.")
    parser.add_argument("encoders", nargs="+", help="encoder names in the weights manifest, or .safetensors files")
    parser.add_argument("--names", default=None, help="comma-separated labels for the encoders")
    parser.add_argument("--weights", default=None, help="weights directory (decoder + named encoders)")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--limit", type=int, default=None, help="only N utterances, evenly spread")
    parser.add_argument("--save-hyps", type=Path, default=None, help="every reference and hypothesis as JSONL")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    names = [n.strip() for n in args.names.split(",")] if args.names else [Path(e).stem for e in args.encoders]
    if len(names) != len(args.encoders) or len(set(names)) != len(names):
        sys.exit("encoders.py: --names needs one distinct label per encoder")

    from claricodec.api import ClariCodec
    from claricodec.asr import ASR, EVAL, ASRError
    from claricodec.evaluate import run, save_hyps, spread, summarize
    from claricodec.train.data import read_manifest
    from claricodec.train.losses import MultiScaleMelLoss
    from claricodec.weights import WeightsError

    torch.set_num_threads(args.threads)
    rows = spread(read_manifest(args.manifest), args.limit)
    if not rows:
        sys.exit(f"encoders.py: no utterances in {args.manifest}")
    mel_loss = MultiScaleMelLoss()
    try:
        systems = [MeasuredEncoder(ClariCodec(args.weights, e), n, mel_loss)
                   for e, n in zip(args.encoders, names)]
        asr = ASR(threads=args.threads)
    except (ASRError, WeightsError) as err:
        sys.exit(f"encoders.py: {err}")
    done = [0]

    def progress():
        done[0] += 1
        if done[0] % 25 == 0 or done[0] == len(rows):
            print(f"{done[0]}/{len(rows)} utterances", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="claricodec-encoders-") as workdir:
        results = run(rows, systems, asr, EVAL, Path(workdir), progress)
    if args.save_hyps:
        save_hyps(results, args.save_hyps)
    summary = summarize(results, names)
    # run() names each utterance's files by its position: the same stems the systems saw.
    stems = {"all": [f"{i:06d}" for i in range(len(results))]}
    for source in sorted({r.source for r in results}):
        stems[source] = [f"{i:06d}" for i, r in enumerate(results) if r.source == source]
    mel = {s.name: mel_by_group(s, stems) for s in systems}
    comparisons = {}
    for name in names[1:]:
        for group in stems:
            members = [r for r in results if group == "all" or r.source == group]
            comparisons[(name, group)] = comparison(members, names[0], name)
    print(f"ASR {asr.name}, beam {EVAL.beam_size}, {EVAL.window_seconds:g} s window; "
          f"{len(results)} utterances of {args.manifest}\n")
    print(markdown(summary, mel, names, comparisons))


if __name__ == "__main__":
    main()
