#!/usr/bin/env python3
"""Intelligibility under channel bit errors: ClariCodec 200 bit/s against Codec2 700C.

    python3 bench/bit_errors.py --limit 20 > table.md

For each utterance of a manifest, both codecs encode it once; then, for each bit error
rate, every payload bit is flipped independently with that probability (seeded; the same
function, flip_bits, damages both codecs' payloads), the damaged payload is decoded, the
result is transcribed by the ASR and scored against the manifest transcript.

- ClariCodec: the raw payload (`encode(..., raw=True)`): one byte per 40 ms frame, all 8
  bits carry the code; there is no header to damage (a real link would protect or fix
  the header). Every byte is a valid code, so a damaged payload always decodes.
- Codec2 700C: `c2enc 700C` / `c2dec 700C` on 8 kHz s16le raw audio, resampled with soxr.
  The bit file is headerless (c2enc writes a header only for a `.c2` name). A 700C frame is
  28 bits packed MSB first into 4 bytes; only those 28 bits are exposed to errors, never
  the 4 padding bits, so both codecs see errors on exactly their payload bits.

ASR and WER: the project's layer (claricodec.asr.ASR, Whisper tiny.en offline, with the
EVAL decode settings by default, and claricodec.textnorm's normaliser and corpus WER),
the same as `claricodec eval` and bench/peers.py. The uncoded audio is transcribed too,
as the floor.

Prints a Markdown table on stdout, progress on stderr.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = ROOT.parent / "shared" / "corpus" / "dev" / "manifest.jsonl"
RATE = 16000
DEFAULT_BERS = (0.0, 0.001, 0.01, 0.05)


def flip_bits(payload: bytes, ber: float, rng: np.random.Generator, bits_per_frame: int,
              bytes_per_frame: int) -> tuple[bytes, int]:
    """Flip each payload bit with probability `ber`; return the damaged bytes and the
    number of bits flipped. A frame is `bytes_per_frame` bytes whose first
    `bits_per_frame` bits (MSB first) are payload; padding bits are left alone."""
    data = np.frombuffer(payload, dtype=np.uint8)
    if len(data) % bytes_per_frame:
        raise ValueError(f"{len(data)} bytes is not a whole number of {bytes_per_frame}-byte frames")
    bits = np.unpackbits(data).reshape(-1, bytes_per_frame * 8)
    errors = rng.random((bits.shape[0], bits_per_frame)) < ber
    bits[:, :bits_per_frame] ^= errors.astype(np.uint8)
    return np.packbits(bits.reshape(-1)).tobytes(), int(errors.sum())


def error_rng(seed: int, utterance: str, ber: float, codec: str) -> np.random.Generator:
    """One independent, reproducible error stream per (seed, utterance, BER, codec)."""
    key = hashlib.sha256(f"{seed}|{utterance}|{ber!r}|{codec}".encode()).digest()
    return np.random.default_rng(int.from_bytes(key[:8], "big"))


class ClariCodecChannel:
    name = "ClariCodec"
    bits_per_frame, bytes_per_frame = 8, 1

    def __init__(self, codec):
        self.codec = codec
        self.nominal_bps = codec.mode.bit_rate

    def encode(self, audio: np.ndarray, workdir: Path, stem: str) -> bytes:
        return self.codec.encode(audio, RATE, raw=True)

    def decode(self, payload: bytes, workdir: Path, stem: str) -> np.ndarray:
        audio, rate = self.codec.decode(payload, raw=True)
        assert rate == RATE
        return audio


class Codec2Channel:
    """Codec2 700C through the same runner as bench/peers.py (raw 8 kHz s16le, c2enc/c2dec)."""
    name = "Codec2 700C"
    bits_per_frame, bytes_per_frame = 28, 4  # 40 ms frames
    nominal_bps = 700.0

    def __init__(self):
        from peers import Codec2System  # bench/ is on sys.path when this runs as a script
        self.runner = Codec2System("700C")

    def encode(self, audio: np.ndarray, workdir: Path, stem: str) -> bytes:
        return self.runner.encode_bits(audio, workdir, stem)

    def decode(self, payload: bytes, workdir: Path, stem: str) -> np.ndarray:
        return self.runner.decode_bits(payload, workdir, stem)


def markdown(bers, channels, wer, cer, seconds, payload_bytes, flipped, total_bits, uncoded,
             note) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}"

    head = " | ".join(f"BER {100 * b:g} %" for b in bers)
    lines = [note, "",
             f"| codec | nominal bit/s | payload bit/s (measured) | file bit/s | {head} |",
             "|---|---:|---:|---:|" + "---:|" * len(bers)]
    lines.append("| uncoded | - | - | - | " + " | ".join([pct(uncoded[0])] + ["-"] * (len(bers) - 1)) + " |")
    for ch in channels:
        measured = total_bits[ch.name] / seconds
        cells = " | ".join(f"{pct(wer[ch.name][b])} ({pct(cer[ch.name][b])})" for b in bers)
        in_file = payload_bytes[ch.name] * 8 / seconds
        lines.append(f"| {ch.name} | {ch.nominal_bps:g} | {measured:.0f} | {in_file:.0f} | {cells} |")
    lines += ["", "Cells: WER % (CER %). Uncoded: the corpus audio, the ASR's floor. Measured rates "
              "count payload bits (ClariCodec raw: no header; Codec2 700C: 28 bits a frame) and file "
              "bits (700C pads each frame to 4 bytes). Bits actually flipped / payload bits exposed:"]
    for ch in channels:
        lines.append(f"- {ch.name}: " + ", ".join(
            f"BER {100 * b:g} %: {flipped[ch.name][b]} / {total_bits[ch.name]}" for b in bers))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="WER of ClariCodec and Codec2 700C under random bit errors.")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST,
                        help="corpus manifest.jsonl or folder (default: the shared dev split)")
    parser.add_argument("--limit", type=int, default=None,
                        help="only N utterances, evenly spread through the manifest")
    parser.add_argument("--ber", default=",".join(f"{b:g}" for b in DEFAULT_BERS),
                        help="comma-separated bit error rates (default 0,0.001,0.01,0.05)")
    parser.add_argument("--seed", type=int, default=0, help="error pattern seed")
    parser.add_argument("--asr", default=None, help="Whisper model name or CTranslate2 folder")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--window", type=float, default=30.0,
                        help="ASR encoder window in seconds; 0 = fitted (faster)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for codec and ASR")
    parser.add_argument("--show", action="store_true", help="print every transcript on stderr")
    parser.add_argument("--weights", default=None, help="ClariCodec weights directory")
    parser.add_argument("--encoder", default=None, help="ClariCodec encoder (stage1, rl, file)")
    args = parser.parse_args()
    try:
        bers = [float(b) for b in args.ber.split(",") if b.strip()]
    except ValueError:
        sys.exit(f"bit_errors.py: --ber wants numbers, got {args.ber!r}")
    if not bers or any(not 0 <= b <= 1 for b in bers):
        sys.exit("bit_errors.py: every --ber must be between 0 and 1")
    for tool in ("c2enc", "c2dec"):
        if shutil.which(tool) is None:
            sys.exit(f"bit_errors.py: {tool} not found (Debian package codec2)")

    import torch

    from claricodec.api import ClariCodec
    from claricodec.asr import ASR, EVAL
    from claricodec.audio import AudioError, load_audio
    from claricodec.evaluate import spread
    from claricodec.textnorm import corpus_errors
    from claricodec.train.data import read_manifest

    torch.set_num_threads(args.threads)
    rows = spread([r for r in read_manifest(args.manifest) if r.get("text")], args.limit)
    if not rows:
        sys.exit(f"bit_errors.py: no transcribed utterances in {args.manifest}")
    codec = ClariCodec(args.weights, args.encoder)
    status = codec.info.get("status")
    if status != "trained":
        print(f"note: ClariCodec weights status is {status!r}, not a finished codec", file=sys.stderr)
    channels = [ClariCodecChannel(codec), Codec2Channel()]
    asr = ASR(args.asr, threads=args.threads)
    options = replace(EVAL, beam_size=args.beam_size, window_seconds=args.window or None)

    refs: list[str] = []
    clips: list[np.ndarray] = []  # uncoded first, then per channel per BER
    keys: list[tuple[str, float | None]] = []
    payload_bytes = {ch.name: 0 for ch in channels}
    total_bits = {ch.name: 0 for ch in channels}
    flipped = {ch.name: {b: 0 for b in bers} for ch in channels}
    seconds = 0.0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="claricodec-ber-") as tmp:
        workdir = Path(tmp)
        for n, row in enumerate(rows):
            try:
                audio = load_audio(row["path"], RATE)
            except AudioError as err:
                print(f"skipped {row['id']}: {err}", file=sys.stderr)
                continue
            if len(audio) == 0:
                print(f"skipped {row['id']}: empty", file=sys.stderr)
                continue
            seconds += len(audio) / RATE
            refs.append(row["text"])
            clips.append(audio)
            keys.append(("uncoded", None))
            for ch in channels:
                stem = f"{n:05d}.{ch.bits_per_frame}"
                payload = ch.encode(audio, workdir, stem)
                payload_bytes[ch.name] += len(payload)
                total_bits[ch.name] += len(payload) // ch.bytes_per_frame * ch.bits_per_frame
                for ber in bers:
                    damaged, count = flip_bits(payload, ber, error_rng(args.seed, str(row["id"]), ber, ch.name),
                                               ch.bits_per_frame, ch.bytes_per_frame)
                    flipped[ch.name][ber] += count
                    clips.append(ch.decode(damaged, workdir, stem))
                    keys.append((ch.name, ber))
            print(f"{n + 1}/{len(rows)} utterances coded", file=sys.stderr, flush=True)
    print(f"transcribing {len(clips)} clips ...", file=sys.stderr, flush=True)
    texts = asr.texts(clips, options)
    per_utt = 1 + len(channels) * len(bers)
    if args.show:
        for i, (key, text) in enumerate(zip(keys, texts)):
            ref = f"  reference: {refs[i // per_utt]}\n" if i % per_utt == 0 else ""
            label = key[0] if key[1] is None else f"{key[0]} @ BER {100 * key[1]:g} %"
            print(f"{ref}  {label}: {text}", file=sys.stderr)

    def score(key):
        hyps = [texts[i] for i in range(len(texts)) if keys[i] == key]
        return corpus_errors(refs, hyps)

    uncoded = score(("uncoded", None))
    wer = {ch.name: {b: score((ch.name, b)).wer for b in bers} for ch in channels}
    cer = {ch.name: {b: score((ch.name, b)).cer for b in bers} for ch in channels}
    assert len(texts) == per_utt * len(refs)
    window = "fitted" if options.window_seconds is None else f"{options.window_seconds:g} s"
    note = (f"{len(refs)} utterances ({seconds:.1f} s of speech) from {args.manifest}; independent "
            f"random bit flips, seed {args.seed}; ASR {asr.name} ({asr.compute_type}, beam "
            f"{options.beam_size}, {window} window), WER after claricodec.textnorm; ClariCodec "
            f"weights {codec.info.get('model_id')} ({status}); {time.perf_counter() - start:.0f} s.")
    print(markdown(bers, channels, wer, cer, seconds, payload_bytes, flipped, total_bits,
                   (uncoded.wer, uncoded.cer), note))


if __name__ == "__main__":
    main()
