#!/usr/bin/env python3
"""Write the manifest of the 200 held-out train utterances that choose which checkpoint ships.

They are train utterances outside GPU slice part 0 (50 of them are in part 1; CPU runs train
on all of train), scored with `claricodec eval` and compared with `versus.py --baseline`.
Dev stays for reporting. The ids are in bench/heldout200.ids; paths come out
absolute, so the manifest works from any folder.

    python3 bench/heldout.py > /tmp/heldout200.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from claricodec.train.data import read_manifest

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=HERE.parents[1] / "shared" / "corpus" / "train")
    parser.add_argument("--ids", type=Path, default=HERE / "heldout200.ids")
    args = parser.parse_args()
    wanted = args.ids.read_text().split()
    rows = {row["id"]: row for row in read_manifest(args.corpus)}
    missing = [i for i in wanted if i not in rows]
    if missing:
        sys.exit(f"heldout.py: {len(missing)} ids not in {args.corpus}, e.g. {missing[0]}")
    for i in wanted:
        row = rows[i]
        print(json.dumps(row | {"path": str(Path(row["path"]).resolve())}))


if __name__ == "__main__":
    main()
