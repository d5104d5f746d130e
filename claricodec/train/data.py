"""Training data: decode a corpus once into a local cache, compute Whisper teacher
features once, and serve length-bucketed batches of whole utterances.

The cache lives outside git (default ~/.cache/claricodec/data/<split>):
    audio.npy     int16, every utterance concatenated
    index.json    per utterance: id, source, speaker, text, offset, length (samples)
    teacher.npy   float16 [frames, 384] Whisper tiny.en encoder states pooled to 25 Hz,
                  concatenated in the same order (frame offset = sample offset / 640)
    front.npy     float16, the same shape: those states as the Whisper-front encoder
                  computes them (each utterance alone, in the codec's analysis windows);
                  only for training a codec with CodecConfig.front = "whisper"
    front.json    the precision and windows those states were computed in (none: int8 and
                  full windows, before session 17; no window: full, before session 30)
A corpus is any folder with a manifest.jsonl (id, path, text, ...) or just audio files.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..audio import load_audio, pcm16

CODEC_RATE = 16000
HOP = 640  # codec frame, 25 Hz
DEFAULT_CACHE = Path(os.environ.get("CLARICODEC_CACHE", Path.home() / ".cache" / "claricodec"))


def read_manifest(corpus: Path) -> list[dict]:
    corpus = Path(corpus)
    manifest = corpus / "manifest.jsonl" if corpus.is_dir() else corpus
    if manifest.is_file():
        root = manifest.parent
        rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
        for row in rows:
            row["path"] = str(root / row["path"])
        return rows
    from ..audio import AUDIO_SUFFIXES
    files = sorted(p for p in corpus.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    return [{"id": str(p.relative_to(corpus)), "path": str(p), "text": None, "source": "files",
             "speaker": None} for p in files]


def utterance_pcm(audio: np.ndarray, utt: dict) -> np.ndarray:
    """One cached utterance (an index.json entry) as float32 in [-1, 1): the cache is int16."""
    return audio[utt["offset"]:utt["offset"] + utt["length"]].astype(np.float32) / 32768


def build_audio_cache(corpus: Path, out_dir: Path, progress=None) -> None:
    """Decode every utterance to 16 kHz mono int16, padded to whole codec frames."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = read_manifest(corpus)
    chunks, index, offset = [], [], 0
    for row in rows:
        audio = load_audio(row["path"], CODEC_RATE)
        n = len(audio) // HOP * HOP  # whole frames only: keeps audio and teacher frames aligned
        if n < HOP * 4:
            continue
        chunks.append(pcm16(audio[:n]))
        index.append({k: row.get(k) for k in ("id", "source", "speaker", "text")}
                     | {"offset": offset, "length": n})
        offset += n
        if progress:
            progress()
    np.save(out_dir / "audio.npy", np.concatenate(chunks))
    (out_dir / "index.json").write_text(json.dumps(index))


def build_teacher_cache(cache_dir: Path, model_path: str | None = None, threads: int = 2,
                        progress=None) -> None:
    """Whisper tiny.en encoder states for every cached utterance, pooled to 25 Hz.

    Whisper always encodes 30 s windows, so short utterances are packed several to a
    window (with 0.5 s of silence between) instead of each being padded to 30 s: ~8x
    less compute. Attention sees the neighbours; the pooled states barely change.
    """
    from ..whisper_front import WhisperStates

    whisper = WhisperStates(model_path, threads)
    audio = np.load(cache_dir / "audio.npy", mmap_mode="r")
    index = json.loads((cache_dir / "index.json").read_text())
    teacher = np.zeros((len(audio) // HOP, 384), dtype=np.float16)
    window, gap = 30 * CODEC_RATE, CODEC_RATE // 2

    def flush(packed):
        # Whisper frames are 50 Hz (320 samples); codec frames are 640: average pairs.
        buf = np.zeros(window, dtype=np.float32)
        pos, places = 0, []
        for utt in packed:
            pcm = utterance_pcm(audio, utt)
            buf[pos:pos + len(pcm)] = pcm
            places.append((utt, pos))
            pos += len(pcm) + gap
        states = whisper.states_50hz(buf)
        for utt, start in places:
            first, frames = start // 320, utt["length"] // 320
            pooled = states[first:first + frames].reshape(-1, 2, 384).mean(1)
            teacher[utt["offset"] // HOP:utt["offset"] // HOP + len(pooled)] = pooled
            if progress:
                progress()

    packed, used = [], 0
    for utt in index:
        if utt["length"] > window:  # rare: longer than Whisper's window, keep its first 30 s
            utt = dict(utt, length=window)
        if used + utt["length"] > window:
            flush(packed)
            packed, used = [], 0
        packed.append(utt)
        used += utt["length"] + gap
    if packed:
        flush(packed)
    np.save(cache_dir / "teacher.npy", teacher)


def build_front_cache(cache_dir: Path, threads: int = 2, progress=None, states=None,
                      front_window: str = "full") -> None:
    """The Whisper-front encoder's input features for every cached utterance, computed as
    encoding that utterance as a file would (whisper_front.file_states) for a head of
    `front_window` (CodecConfig.front_window). ~0.15 s an utterance on one core (full
    windows); written to front.npy.partial, then renamed. `states`: what computes Whisper's
    states (default: CTranslate2, as encoding does; on a GPU machine
    whisper_teacher.TorchWhisperStates)."""
    from ..codec import front_trimmed
    from ..whisper_front import FEATURE_DIM, WhisperStates, file_states

    trimmed = front_trimmed(front_window)
    states = states or WhisperStates(threads=threads)
    audio = np.load(cache_dir / "audio.npy", mmap_mode="r")
    index = json.loads((cache_dir / "index.json").read_text())
    front = np.zeros((len(audio) // HOP, FEATURE_DIM), dtype=np.float16)
    for utt in index:
        pcm = utterance_pcm(audio, utt)
        first = utt["offset"] // HOP
        front[first:first + utt["length"] // HOP] = file_states(pcm, states, trimmed)
        if progress:
            progress()
    partial = cache_dir / "front.npy.partial"
    with open(partial, "wb") as f:
        np.save(f, front)
    partial.replace(cache_dir / "front.npy")
    (cache_dir / "front.json").write_text(json.dumps({"compute_type": states.compute_type,
                                                      "window": front_window}))


def check_front_cache(cache_dir: Path, front_window: str) -> None:
    """Raise ValueError unless front.npy was computed as encoding computes it for a head of
    `front_window`: in the same precision (a head trained on int8 states meets float32
    ones in use: 14 % of its codes differ) and the same windows (full against trimmed: 19 %)."""
    from ..whisper_front import WhisperStates

    meta = Path(cache_dir) / "front.json"
    made = json.loads(meta.read_text()) if meta.is_file() else {}
    # Caches made before session 17 hold int8 states; before session 30, full windows.
    precision, window = made.get("compute_type", "int8"), made.get("window", "full")
    if precision != WhisperStates.compute_type:
        raise ValueError(f"{cache_dir}/front.npy holds Whisper states computed in {precision}, but "
                         f"encoding computes them in {WhisperStates.compute_type}: run "
                         f"`claricodec train prepare-front --front-window {front_window}` again")
    if window != front_window:
        raise ValueError(f"{cache_dir}/front.npy holds Whisper states of {window} windows, but this "
                         f"codec's head reads {front_window} ones: run `claricodec train "
                         f"prepare-front --front-window {front_window}`")
