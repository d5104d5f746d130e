#!/usr/bin/env python3
"""What mode 2 (the same codes, entropy-coded) sends, against mode 1, for folders of .cc
files: each file's frames are coded again in mode 2 (no audio, no model: the codes are
the same, so is the decoded audio) and both sizes are summed per folder.

    claricodec encode ../shared/corpus/dev /tmp/dev-cc      # mode-1 files of any speech
    python3 bench/mode2_rate.py /tmp/dev-cc/an4 /tmp/dev-cc/speechocean762 /tmp/dev-cc

Prints a Markdown table: payload bit/s (headers excluded), bits a frame, and whole files'
bit/s (headers included) in each mode.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from claricodec.bitstream import Header, decode_header, read_stream, write_stream  # noqa: E402
from claricodec.modes import get_mode  # noqa: E402


def folder_rates(folder: Path) -> dict:
    """Sums over every .cc file under `folder` (mode-1 files only)."""
    totals = dict(files=0, seconds=0.0, frames=0, file_bytes=[0, 0], payload_bytes=[0, 0])
    for path in sorted(folder.rglob("*.cc")):
        data = path.read_bytes()
        stream = read_stream(data)
        header = stream.header
        if get_mode(header.mode).entropy_coded:
            raise SystemExit(f"mode2_rate.py: {path} is already mode {header.mode}")
        coded = write_stream(Header(mode=2, model_id=header.model_id, num_samples=header.num_samples),
                             stream.indices)
        mode = get_mode(header.mode)
        totals["files"] += 1
        totals["frames"] += len(stream.indices)
        totals["seconds"] += (header.num_samples or len(stream.indices) * mode.hop) / mode.sample_rate
        for k, blob in enumerate((data, coded)):
            totals["file_bytes"][k] += len(blob)
            totals["payload_bytes"][k] += len(blob) - decode_header(blob)[1]
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders of mode-1 .cc files (searched recursively)")
    args = parser.parse_args()
    print("| files | count | minutes | payload bit/s: mode 1 | mode 2 | mode 2 bits a frame "
          "| file bit/s (headers in): mode 1 | mode 2 |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for folder in args.folders:
        t = folder_rates(folder)
        if not t["files"]:
            raise SystemExit(f"mode2_rate.py: no .cc files under {folder}")
        sec = t["seconds"]
        payload = [8 * b / sec for b in t["payload_bytes"]]
        files = [8 * b / sec for b in t["file_bytes"]]
        print(f"| {folder} | {t['files']} | {sec / 60:.1f} | {payload[0]:.1f} | {payload[1]:.1f} "
              f"| {8 * t['payload_bytes'][1] / t['frames']:.2f} | {files[0]:.1f} | {files[1]:.1f} |")


if __name__ == "__main__":
    main()
