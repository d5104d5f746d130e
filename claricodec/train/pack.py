"""Carry a slice of the training cache to a borrowed GPU machine, and unpack it there.

What travels to such a machine is capped (64 MiB with the working tree), while the train
cache is ~1.5 GB: int16 audio at 32 kB/s and fp16 teacher states at 19 kB/s. A pack keeps
the cache's content but stores audio as Ogg/Opus (~3.5 kB/s) and teacher states as int8
with one scale per frame (~9.7 kB/s): ~40 minutes of speech in 30 MB. Part K is the K-th
budget-sized slice of one fixed shuffle, so successive GPU runs see different speech.
The dev split is packed as the 48 utterances validation uses, so dev scores stay
comparable with CPU runs.

A pack folder holds one folder per split:
    audio.ogg          the utterances back to back (offsets as in index.json)
    index.json         the cache index, offsets renumbered
    teacher-int8.npy   [frames, 384] int8     teacher-scale.npy   [frames] float32
Unpacking writes the usual cache (audio.npy, index.json, teacher.npy).
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np

from .data import CODEC_RATE, HOP

OPUS_BYTES_PER_SECOND = 4000  # measured ~3.5 kB/s on this corpus; kept on the safe side
TEACHER_DIM = 384


class PackError(Exception):
    pass


def estimated_bytes(length: int) -> int:
    frames = length // HOP
    return int(length / CODEC_RATE * OPUS_BYTES_PER_SECOND) + frames * (TEACHER_DIM + 4) + 200


def part_ids(index: list[dict], budget_bytes: int, part: int, seed: int = 0) -> list[int]:
    """Utterance ids of slice `part` of a fixed shuffle, each slice within the budget."""
    order = list(range(len(index)))
    random.Random(seed).shuffle(order)
    slices, current, used = [], [], 0
    for i in order:
        size = estimated_bytes(index[i]["length"])
        if current and used + size > budget_bytes:
            slices.append(current)
            current, used = [], 0
        current.append(i)
        used += size
    if current:
        slices.append(current)
    if not 0 <= part < len(slices):
        raise PackError(f"part {part} does not exist: this cache makes {len(slices)} parts "
                        f"of {budget_bytes / 1e6:g} MB (0 to {len(slices) - 1})")
    return sorted(slices[part])


def quantize_teacher(teacher: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 per frame, scaled by the frame's largest magnitude (all-zero frames stay zero)."""
    t = teacher.astype(np.float32)
    scale = np.abs(t).max(axis=1) / 127
    safe = np.where(scale > 0, scale, 1.0)
    return np.round(t / safe[:, None]).astype(np.int8), scale.astype(np.float32)


def pack_split(cache_dir: Path, out_dir: Path, ids: list[int]) -> None:
    """Write the chosen utterances of a cache as a pack split."""
    import soundfile as sf
    audio = np.load(cache_dir / "audio.npy", mmap_mode="r")
    index = json.loads((cache_dir / "index.json").read_text())
    teacher_path = cache_dir / "teacher.npy"
    if not teacher_path.exists():
        raise PackError(f"{cache_dir}: no teacher.npy (run `claricodec train prepare` first)")
    teacher = np.load(teacher_path, mmap_mode="r")
    pcm, states, rows, offset = [], [], [], 0
    for i in ids:
        utt = index[i]
        start, length = utt["offset"], utt["length"]
        pcm.append(audio[start:start + length])
        states.append(teacher[start // HOP:(start + length) // HOP])
        rows.append(dict(utt, offset=offset))
        offset += length
    out_dir.mkdir(parents=True, exist_ok=True)
    sf.write(out_dir / "audio.ogg", np.concatenate(pcm).astype(np.float32) / 32768, CODEC_RATE,
             format="OGG", subtype="OPUS")
    q, scale = quantize_teacher(np.concatenate(states))
    np.save(out_dir / "teacher-int8.npy", q)
    np.save(out_dir / "teacher-scale.npy", scale)
    (out_dir / "index.json").write_text(json.dumps(rows))


def unpack_split(pack_dir: Path, cache_dir: Path) -> int:
    """Rebuild a training cache from a pack split; returns the number of utterances."""
    import soundfile as sf
    index = json.loads((pack_dir / "index.json").read_text())
    total = sum(u["length"] for u in index)
    audio, rate = sf.read(pack_dir / "audio.ogg", dtype="float32")
    if rate != CODEC_RATE or abs(len(audio) - total) > HOP:
        raise PackError(f"{pack_dir}: audio.ogg holds {len(audio)} samples at {rate} Hz, "
                        f"the index expects {total} at {CODEC_RATE} Hz")
    audio = np.pad(audio, (0, max(0, total - len(audio))))[:total]
    q = np.load(pack_dir / "teacher-int8.npy")
    scale = np.load(pack_dir / "teacher-scale.npy")
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(cache_dir / "audio.npy", np.clip(np.round(audio * 32768), -32768, 32767).astype(np.int16))
    np.save(cache_dir / "teacher.npy", (q.astype(np.float32) * scale[:, None]).astype(np.float16))
    shutil.copyfile(pack_dir / "index.json", cache_dir / "index.json")
    return len(index)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# What the GPU machine's image lacks of our dependencies (it has torch, numpy, click, rich,
# safetensors): read from its package list in the device tool's notes.
DEVICE_WHEELS = ["soundfile", "cffi", "pycparser", "soxr", "bitstring", "bitarray"]

# Written into each pack as run.sh. Runs from the repository root on the GPU machine.
DEVICE_SCRIPT = r"""#!/bin/bash
# Stage 1 on a borrowed GPU, from the repository root, with this pack folder carried.
# Trains from weights/warmstart/stage1.safetensors for MINUTES (default 7.5, so a run
# with unpacking and the closing validation stays under 9); further arguments go to
# `claricodec train stage1` (e.g. --steps 60000 for a longer schedule than the warm-start's
# own, --gan-start N). Then it leaves the warm-start
# (replaced only if dev validation improved) and the log in $OUT. Back here: copy the
# warm-start over weights/warmstart/stage1.safetensors and pack the next --part.
set -euo pipefail
PACK=$(cd "$(dirname "$0")" && pwd)
MINUTES=${1:-7.5}
OUT=${OUT:-$PACK/out}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu tries the recipe on a machine without a GPU
WORK=${TMPDIR:-/tmp}/claricodec-gpu
if compgen -G "$PACK/wheels/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$WORK/site" "$PACK"/wheels/*.whl
  export PYTHONPATH="$WORK/site"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
claricodec() { python3 -c 'import sys; from cli.main import main; sys.argv[0] = "claricodec"; main()' "$@"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
claricodec train unpack "$PACK" --cache "$WORK/cache"
mkdir -p "$WORK/run" "$OUT"
cp weights/warmstart/stage1.safetensors "$WORK/run/warmstart.safetensors"
claricodec train stage1 --cache "$WORK/cache" --run-dir "$WORK/run" \
  --warmstart "$WORK/run/warmstart.safetensors" --minutes "$MINUTES" --device "$DEVICE" --threads 8 "${@:2}"
cp "$WORK/run/warmstart.safetensors" "$OUT/stage1.safetensors"
cp "$WORK/run/train.log" "$OUT/train.log"
echo "warm-start and log in $OUT"
"""
