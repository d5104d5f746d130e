"""Carry a slice of the training cache to a borrowed GPU machine, and unpack it there.

What travels to such a machine is capped (64 MiB with the working tree), while the train
cache is ~1.5 GB: int16 audio at 32 kB/s and fp16 teacher states at 19 kB/s. A pack keeps
the cache's content but stores audio as Ogg/Opus (~3.5 kB/s) and teacher states as int8
with one scale per frame (~9.7 kB/s): ~40 minutes of speech in 30 MB. Part K is the K-th
budget-sized slice of one fixed shuffle, so successive GPU runs see different speech.
The dev split is packed as the 48 utterances validation uses, so dev scores stay
comparable with CPU runs.

The train split's teacher states can travel as their top principal components instead
(`teacher_dims`): 128 of 384 keep ~89 % of the variance (cosine ~0.91 to the original) at
a third of the bytes, so a pack holds ~2.5x the speech. The distillation target is then
that projection; dev keeps full states so the validation score is unchanged.

For training the decoder alone on a Whisper-front codec (`pack --frozen-encoder WARM`), each
frame carries instead the frozen encoder's latent (4 fp16 numbers, computed here from the
cache's front.npy with that warm-start's encoder), and the train split carries Whisper's
encoder weights for the ASR feature loss (whisper_teacher.save_encoder_file, ~16 MB).

For training the whole Whisper-front codec (`pack --whisper-front WARM`), frames carry
nothing beside the audio: its 384-dim input states would cost 9.7 kB/s, five times the
audio at --opus-level 0.97. The train split carries Whisper's encoder, and on the GPU
machine run.sh computes the states in torch (`train prepare-front --whisper-file`) before
training.

A pack folder holds one folder per split:
    audio.ogg          the utterances back to back (offsets as in index.json)
    index.json         the cache index, offsets renumbered
    teacher-int8.npy   [frames, 384 or K] int8     teacher-scale.npy   [frames] float32
    teacher-basis.npy  [K, 384], teacher-mean.npy [384]  (only with K components)
    latent.npy, latent.json, whisper-encoder.safetensors   (instead, with --frozen-encoder)
    whisper-encoder.safetensors                            (instead, with --whisper-front)
Unpacking writes the usual cache (audio.npy, index.json, teacher.npy or the latent files).
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np

from .data import CODEC_RATE, HOP, check_front_cache

OPUS_BYTES_PER_SECOND = 4000  # measured ~3.5 kB/s on this corpus; kept on the safe side
TEACHER_DIM = 384


class PackError(Exception):
    pass


def teacher_frame_bytes(teacher_dims: int = TEACHER_DIM) -> int:
    """What a frame's teacher state costs in a pack: int8 per dimension + a float32 scale."""
    return teacher_dims + 4


def basis_bytes(teacher_dims: int) -> int:
    """What travels once with `teacher_dims` principal components: the basis and the mean."""
    return (teacher_dims + 1) * TEACHER_DIM * 4 if teacher_dims < TEACHER_DIM else 0


def estimated_bytes(length: int, frame_bytes: int = teacher_frame_bytes(),
                    audio_bytes_per_second: float = OPUS_BYTES_PER_SECOND) -> int:
    frames = length // HOP
    return int(length / CODEC_RATE * audio_bytes_per_second) + frames * frame_bytes + 200


def part_ids(index: list[dict], budget_bytes: int, part: int, seed: int = 0,
             frame_bytes: int = teacher_frame_bytes(),
             audio_bytes_per_second: float = OPUS_BYTES_PER_SECOND,
             exclude: frozenset[str] = frozenset()) -> list[int]:
    """Utterance ids of slice `part` of a fixed shuffle, each slice within the budget (audio
    plus `frame_bytes` per frame for what travels beside it). Utterances whose id is in
    `exclude` (e.g. those held out for scoring) are never packed."""
    order = list(range(len(index)))
    random.Random(seed).shuffle(order)
    order = [i for i in order if index[i].get("id") not in exclude]
    slices, current, used = [], [], 0
    for i in order:
        size = estimated_bytes(index[i]["length"], frame_bytes, audio_bytes_per_second)
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


def teacher_basis(states: np.ndarray, dims: int, max_frames: int = 100_000):
    """Mean and top `dims` principal directions ([dims, 384]) of the non-zero states."""
    sample = states[::max(1, len(states) // max_frames)].astype(np.float32)
    sample = sample[np.abs(sample).sum(1) > 0]
    mean = sample.mean(0)
    _, _, directions = np.linalg.svd(sample - mean, full_matrices=False)
    return mean, directions[:dims]


def project_teacher(states: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Coordinates in the basis; frames without a teacher state (all zero) stay zero."""
    coords = (states.astype(np.float32) - mean) @ basis.T
    coords[np.abs(states).sum(1) == 0] = 0
    return coords


def restore_teacher(coords: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    states = coords @ basis + mean
    states[np.abs(coords).sum(1) == 0] = 0  # back to "no teacher state"
    return states


def write_opus(path, pcm: np.ndarray, level: float | None = None) -> None:
    """int16 PCM as Ogg/Opus; `level` is libsndfile's compression level (0 largest and best,
    1 smallest; None its default, ~28 kbit/s here; 0.97 ~13 kbit/s, still wideband)."""
    import soundfile as sf
    extra = {} if level is None else {"compression_level": level}
    sf.write(path, pcm.astype(np.float32) / 32768, CODEC_RATE, format="OGG", subtype="OPUS", **extra)


def opus_bytes_per_second(cache_dir: Path, level: float | None, seconds: float = 120) -> float:
    """Measured on the cache's first `seconds` of speech, plus 10 % for speech that codes larger."""
    import io
    audio = np.load(cache_dir / "audio.npy", mmap_mode="r")
    sample = np.asarray(audio[:int(seconds * CODEC_RATE)])
    buffer = io.BytesIO()
    write_opus(buffer, sample, level)
    return 1.1 * buffer.tell() / (len(sample) / CODEC_RATE)


def pack_split(cache_dir: Path, out_dir: Path, ids: list[int],
               teacher_dims: int | None = None, opus_level: float | None = None,
               latents_of=None, audio_only: bool = False) -> None:
    """Write the chosen utterances of a cache as a pack split (teacher states as their top
    `teacher_dims` principal components, or whole when None; audio at `opus_level`). With
    `latents_of` (a Whisper-front Codec), its encoder's latents instead of teacher states;
    with `audio_only`, neither (the GPU machine computes the Whisper front's features)."""
    audio = np.load(cache_dir / "audio.npy", mmap_mode="r")
    index = json.loads((cache_dir / "index.json").read_text())
    features = "front.npy" if latents_of is not None else "teacher.npy"
    if not audio_only and not (cache_dir / features).exists():
        command = "prepare-front" if latents_of is not None else "prepare"
        raise PackError(f"{cache_dir}: no {features} (run `claricodec train {command}` first)")
    if latents_of is not None:
        try:
            check_front_cache(cache_dir, latents_of.config.front_window)
        except ValueError as err:
            raise PackError(str(err)) from None
    teacher = None if audio_only else np.load(cache_dir / features, mmap_mode="r")
    pcm, states, rows, offset = [], [], [], 0
    for i in ids:
        utt = index[i]
        start, length = utt["offset"], utt["length"]
        pcm.append(audio[start:start + length])
        if teacher is not None:
            states.append(teacher[start // HOP:(start + length) // HOP])
        rows.append(dict(utt, offset=offset))
        offset += length
    out_dir.mkdir(parents=True, exist_ok=True)
    write_opus(out_dir / "audio.ogg", np.concatenate(pcm), opus_level)
    (out_dir / "index.json").write_text(json.dumps(rows))
    if audio_only:
        return
    if latents_of is not None:
        write_latents(latents_of, states, out_dir)
        return
    states = np.concatenate(states)
    if teacher_dims is not None and teacher_dims < TEACHER_DIM:
        mean, basis = teacher_basis(states, teacher_dims)
        np.save(out_dir / "teacher-mean.npy", mean)
        np.save(out_dir / "teacher-basis.npy", basis)
        states = project_teacher(states, mean, basis)
    q, scale = quantize_teacher(states)
    np.save(out_dir / "teacher-int8.npy", q)
    np.save(out_dir / "teacher-scale.npy", scale)


def write_latents(codec, front_states: list[np.ndarray], out_dir: Path) -> None:
    """The codec's encoder latent of each utterance (its front features alone, as encoding
    that utterance as a file computes it), fp16, concatenated; and the encoder's fingerprint."""
    import torch
    from .stage1 import LATENT_FILE, LATENT_INFO, encoder_fingerprint
    latents = []
    with torch.no_grad():
        for states in front_states:
            features = torch.from_numpy(np.asarray(states, dtype=np.float32).T.copy())[None]
            latents.append(codec.encoder.from_features(features)[0].T.numpy().astype(np.float16))
    np.save(out_dir / LATENT_FILE, np.concatenate(latents))
    (out_dir / LATENT_INFO).write_text(json.dumps({"encoder_sha256": encoder_fingerprint(codec)}))


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
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(cache_dir / "audio.npy", np.clip(np.round(audio * 32768), -32768, 32767).astype(np.int16))
    shutil.copyfile(pack_dir / "index.json", cache_dir / "index.json")
    from .stage1 import LATENT_FILE, LATENT_INFO
    from .whisper_teacher import WHISPER_FILE
    carried = [name for name in (LATENT_FILE, LATENT_INFO, WHISPER_FILE) if (pack_dir / name).exists()]
    for name in carried:
        shutil.copyfile(pack_dir / name, cache_dir / name)
    if LATENT_FILE in carried or not (pack_dir / "teacher-int8.npy").exists():
        return len(index)  # latents, or audio alone (`prepare-front --whisper-file` follows)
    q = np.load(pack_dir / "teacher-int8.npy")
    scale = np.load(pack_dir / "teacher-scale.npy")
    states = q.astype(np.float32) * scale[:, None]
    if (pack_dir / "teacher-basis.npy").exists():
        states = restore_teacher(states, np.load(pack_dir / "teacher-mean.npy"),
                                 np.load(pack_dir / "teacher-basis.npy"))
    np.save(cache_dir / "teacher.npy", states.astype(np.float16))
    return len(index)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# What the GPU machine's image lacks of our dependencies (it has torch, numpy, click, rich,
# safetensors): read from its package list in the device tool's notes.
DEVICE_WHEELS = ["soundfile", "cffi", "pycparser", "soxr", "bitstring", "bitarray"]

# Written into each pack as run.sh (@WARM@: the warm-start it continues from, relative to the
# repository root; @FRONT_WINDOW@: its head's CodecConfig.front_window). Runs from the
# repository root on the GPU machine.
DEVICE_SCRIPT = r"""#!/bin/bash
# Stage 1 on a borrowed GPU, from the repository root, with this pack folder carried:
#   bash PACK/run.sh [MINUTES] [more `claricodec train stage1` flags]
# Continues from the warm-start WARM (default @WARM@) with a new learning-rate cycle peaking
# at LR (default 3e-4) on batches of BATCH seconds of audio (default 80; the CPU uses 20).
# A short probe times a step first, so that the cycle's cosine ends when MINUTES (default
# 6.5) of training are up. Training runs in SEGMENTS (default 3) pieces; after each, the
# averaged weights go to $OUT/segK.safetensors whatever their validation score (pick one
# by WER back home), with train.log. Back here: copy the one chosen over
# WARM, and pack the next --part for the next loan. FRONT_WINDOW (default the warm-start's,
# @FRONT_WINDOW@) is what Whisper hears around an utterance, for a --whisper-front pack.
set -euo pipefail
PACK=$(cd "$(dirname "$0")" && pwd)
MINUTES=${1:-6.5}
LR=${LR:-3e-4}
BATCH=${BATCH:-80}
SEGMENTS=${SEGMENTS:-3}
FRONT_WINDOW=${FRONT_WINDOW:-@FRONT_WINDOW@}
OUT=${OUT:-$PACK/out}
WARM=${WARM:-@WARM@}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu tries the recipe on a machine without a GPU
WORK=${TMPDIR:-/tmp}/claricodec-gpu
if compgen -G "$PACK/wheels/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$WORK/site" "$PACK"/wheels/*.whl
  export PYTHONPATH="$WORK/site"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
claricodec() { python3 -c 'import sys; from cli.main import main; sys.argv[0] = "claricodec"; main()' "$@"; }
stage1() {
  claricodec train stage1 --cache "$WORK/cache" --run-dir "$WORK/run" --device "$DEVICE" \
    --warmstart "$WORK/run/warmstart.safetensors" --threads 8 --batch-seconds "$BATCH" \
    --front-window "$FRONT_WINDOW" "$@"
}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
rm -rf "$WORK/run" && mkdir -p "$WORK/run" "$OUT"
[ -f "$WORK/cache/dev/index.json" ] || claricodec train unpack "$PACK" --cache "$WORK/cache"
# A --whisper-front pack carries audio alone: the encoder's input states are made here.
if [ -f "$PACK/train/whisper-encoder.safetensors" ] && [ ! -f "$PACK/train/latent.npy" ] \
   && [ ! -f "$WORK/cache/dev/front.npy" ]; then
  claricodec train prepare-front --cache "$WORK/cache" --device "$DEVICE" \
    --whisper-file "$PACK/train/whisper-encoder.safetensors" --front-window "$FRONT_WINDOW"
fi
cp "$WARM" "$WORK/run/warmstart.safetensors"
# Probe: ~40 s at the tail of the old schedule, to time a step at this batch size.
stage1 --minutes 0.6 "${@:2}"
read -r NOW END < <(python3 - "$WORK/run/train.log" "$MINUTES" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
steps = [r for r in rows if "lr" in r]  # the periodic loss lines: step and training wall time
now = rows[-1]["step"]
if len(steps) >= 2 and steps[-1]["wall"] > steps[0]["wall"]:  # skips the warm-up steps
    rate = (steps[-1]["step"] - steps[0]["step"]) / (steps[-1]["wall"] - steps[0]["wall"])
else:
    rate = 1.0
end = now + int(rate * 60 * float(sys.argv[2]))
print(now, end)
print(f"probe: {rate:.2f} steps/s; the new cycle runs to step {end}", file=sys.stderr)
PY
)
PER=$(python3 -c "print(float('$MINUTES') / $SEGMENTS)")
for K in $(seq 1 "$SEGMENTS"); do
  if [ "$K" = 1 ]; then stage1 --minutes "$PER" --restart "$LR" --steps "$END" "${@:2}"
  else stage1 --minutes "$PER" "${@:2}"; fi
  claricodec train snapshot --run-dir "$WORK/run" --cache "$WORK/cache" --device "$DEVICE" \
    --out "$OUT/seg$K.safetensors"
  cp "$WORK/run/train.log" "$OUT/train.log"
done
echo "from step $NOW: segments and train.log in $OUT"
"""
