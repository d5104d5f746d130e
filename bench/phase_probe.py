#!/usr/bin/env python3
"""Would the states judge pick the better of two frame phases? A probe, not a feature.

    python3 bench/long_files.py M --per-file 1 --gap 0 --save-hyps A.jsonl
    python3 bench/long_files.py M --per-file 1 --gap 0 --lead 0.02 --save-hyps B.jsonl
    python3 bench/phase_probe.py M A.jsonl B.jsonl

Each utterance goes through `encode --phase-search`'s choice (`phase.PhasedEncoder`: coded
as is and delayed 20 ms in its frames, both decoded, the states judge keeps one), and the
transcripts that long_files.py saved for the two codings score the pick. (20 ms of silence
before an utterance codes it as a 20 ms delay does, but for the frame that silence adds
at the end, where dev's utterances are silent.) Prints WER as coded, with the other phase,
the judge's pick, and the better of the two (an oracle), with paired 95 % intervals.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from claricodec.evaluate import RATE, errors_of, load_hyps, wer_difference

CLARICODEC = "decoded"  # long_files.py's name for ClariCodec's transcripts


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("manifest", help="the JSONL manifest both long_files.py runs read")
    parser.add_argument("as_is", type=Path, help="long_files.py --save-hyps of the run without --lead")
    parser.add_argument("moved", type=Path, help="... of the run with --lead 0.02 (half a frame)")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


def read_runs(args: argparse.Namespace) -> tuple[dict, list, list]:
    """The manifest's rows by id, and the two runs' results (the same utterances, in order)."""
    rows = {row["id"]: row for row in map(json.loads, Path(args.manifest).read_text().splitlines())}
    as_is, moved = load_hyps(args.as_is), load_hyps(args.moved)
    if [r.id for r in as_is] != [r.id for r in moved] or not set(r.id for r in as_is) <= set(rows):
        sys.exit(f"{Path(sys.argv[0]).name}: the two hyps files must be runs over the same manifest")
    return rows, as_is, moved


def print_picks(as_is: list, moved: list, picks: dict[str, list[bool]]) -> None:
    """A table: WER as coded, moved, each picker's choice (True: moved), and the oracle."""
    first, second = errors_of(as_is, CLARICODEC), errors_of(moved, CLARICODEC)
    oracle = [min(a, b, key=lambda e: e.word_errors) for a, b in zip(first, second)]
    words = sum(e.ref_words for e in first)
    print(f"{len(first)} utterances; "
          f"{sum(a.word_errors != b.word_errors for a, b in zip(first, second))} differ in word errors\n")
    print("| coded | moved | WER % | against as is, points [95 % CI] |")
    print("|---|---:|---:|---|")
    rows = [("as is", 0, first), ("20 ms later", len(first), second)]
    rows += [(name, sum(flags), [b if m else a for a, b, m in zip(first, second, flags)])
             for name, flags in picks.items()]
    rows.append(("the better of the two (oracle)", sum(b.word_errors < a.word_errors for a, b in zip(first, second)), oracle))
    for name, count, errors in rows:
        wer = 100 * sum(e.word_errors for e in errors) / words
        diff, low, high = wer_difference(errors, first) if errors is not first else (None, None, None)
        against = f"{100 * diff:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]" if diff is not None else ""
        print(f"| {name} | {count} | {wer:.1f} | {against} |")


def main() -> None:
    args = arguments(__doc__.split("\n\n")[0])
    import torch

    from claricodec.api import ClariCodec
    from claricodec.audio import load_audio
    torch.set_num_threads(args.threads)
    rows, as_is, moved = read_runs(args)
    codec = ClariCodec(args.weights, phase_search=True)
    judged_moved = []
    for number, result in enumerate(as_is, 1):
        encoder = codec._encoder()  # a PhasedEncoder; an utterance under 10 s is one phrase
        encoder.push(load_audio(rows[result.id]["path"], RATE))
        encoder.finish()
        judged_moved.append(encoder.chosen[0] > 0)
        if number % 50 == 0:
            print(f"{number}/{len(as_is)}", file=sys.stderr)
    print_picks(as_is, moved, {"the states judge's pick": judged_moved})


if __name__ == "__main__":
    main()
