"""ClariCodec against each peer, utterance by utterance, from a `peers.py --save-hyps` file.

The peers table gives each system's WER against uncoded speech; this answers the question
the done criterion asks: is ClariCodec's WER lower than a peer's on the same utterances,
and by more than resampling noise? Paired bootstrap over utterances, overall and per source.

    python3 bench/versus.py peers_hyps.jsonl
    python3 bench/versus.py new.jsonl --baseline old.jsonl   # two checkpoints (claricodec eval files)

With --baseline, the other file's ClariCodec hypotheses join as one more peer, "baseline":
two weights (or two encode settings) on the same utterances, as when choosing which
checkpoint to ship. Peers in the baseline file that the first lacks join too, so a
`claricodec eval --save-hyps` file can be set against a `peers.py --save-hyps` file's Codec2.
"""
from __future__ import annotations

import argparse
import json

from claricodec.evaluate import wer_difference
from claricodec.textnorm import count_errors

CLARICODEC = "decoded"  # the name peers.py gives ClariCodec's hypotheses


def compare(rows: list[dict], peer: str, resamples: int = 2000) -> dict:
    """WER difference ClariCodec - peer in points, with its 95 % interval."""
    ours = [count_errors(r["reference"], r["hyps"][CLARICODEC]) for r in rows]
    theirs = [count_errors(r["reference"], r["hyps"][peer]) for r in rows]
    diff, low, high = wer_difference(ours, theirs, resamples)
    return {"utterances": len(rows), "diff": 100 * diff, "low": 100 * low, "high": 100 * high}


def markdown(rows: list[dict], resamples: int = 2000) -> str:
    peers = [name for name in rows[0]["hyps"] if name not in ("original", CLARICODEC)]
    sources = sorted({r["source"] for r in rows})
    lines = ["| ClariCodec - peer | set | utterances | WER difference, points | 95% CI | verdict |",
             "|---|---|---:|---:|---|---|"]
    for peer in peers:
        for source in [None] + sources:
            subset = [r for r in rows if source is None or r["source"] == source]
            c = compare(subset, peer, resamples)
            verdict = ("ClariCodec lower" if c["high"] < 0 else
                       "peer lower" if c["low"] > 0 else "not distinguishable")
            lines.append(f"| {peer} | {source or 'all'} | {c['utterances']} | {c['diff']:+.1f} "
                         f"| [{c['low']:+.1f}, {c['high']:+.1f}] | {verdict} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("hyps", help="JSONL written by bench/peers.py --save-hyps")
    parser.add_argument("--baseline", default=None,
                        help="another --save-hyps file of the same utterances (older weights)")
    parser.add_argument("--baseline-system", default=CLARICODEC,
                        help="which system of the baseline file is the baseline (default: its "
                             "ClariCodec hypotheses; a session script may have named others)")
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args()
    rows = read_rows(args.hyps)
    if CLARICODEC not in rows[0]["hyps"]:
        raise SystemExit(f"{args.hyps}: no ClariCodec hypotheses ('{CLARICODEC}'); it has "
                         f"{', '.join(rows[0]['hyps'])}")
    if args.baseline:
        rows = with_baseline(rows, read_rows(args.baseline), args.baseline, args.baseline_system)
    print(markdown(rows, args.resamples))


def read_rows(path: str) -> list[dict]:
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows:
        raise SystemExit(f"{path}: no utterances")
    return rows


def with_baseline(rows: list[dict], baseline: list[dict], name: str,
                  system: str = CLARICODEC) -> list[dict]:
    """`rows` with the baseline file's `system` hypothesis (ClariCodec's) as the peer
    "baseline", and its other systems (peers' hypotheses) where `rows` has none of that name."""
    if system not in baseline[0]["hyps"]:
        raise SystemExit(f"{name}: no hypotheses of '{system}'; it has {', '.join(baseline[0]['hyps'])} "
                         "(--baseline-system)")
    theirs = {r["id"]: r for r in baseline}
    if set(theirs) != {r["id"] for r in rows}:
        raise SystemExit(f"{name}: not the same utterances as the first file")
    for row in rows:
        if theirs[row["id"]]["reference"] != row["reference"]:
            raise SystemExit(f"{name}: utterance {row['id']} has another reference")
        hyps = theirs[row["id"]]["hyps"]
        row["hyps"]["baseline"] = hyps[system]
        for peer, text in hyps.items():
            row["hyps"].setdefault(peer, text)
    return rows


if __name__ == "__main__":
    main()
