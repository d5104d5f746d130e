#!/usr/bin/env python3
"""ClariCodec against its peers, on the same utterances in the same run.

    python3 bench/peers.py --limit 100 > table.md

Systems: uncoded (the corpus audio as stored), ClariCodec 200 bit/s (a real .cc file),
Codec2 450 / 700C / 1200 (c2enc/c2dec on 8 kHz raw s16le, resampled with soxr) and Opus
at 6 kbit/s (opusenc/opusdec). Each decoded signal is transcribed by the same ASR and
scored by claricodec.evaluate (one implementation for `claricodec eval` and this).

Prints a Markdown table on stdout; progress and notes on stderr; --json prints the full
report (all groups, per source) as JSON instead of the table.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = ROOT.parent / "shared" / "corpus" / "dev" / "manifest.jsonl"
RATE = 16000


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.decode(errors='replace').strip()}")


class Codec2System:
    """Codec2 via the Debian command-line tools. Raw (headerless) bit files: c2enc only
    writes its header for a .c2 name. Each 40 ms frame is padded to whole bytes, so 450
    and 700C files are larger than their nominal rate (3 and 4 bytes a frame)."""

    def __init__(self, mode: str):
        self.mode, self.name = mode, f"codec2-{mode.lower()}"
        self.nominal_bps = float(mode.rstrip("C"))

    def encode_bits(self, audio: np.ndarray, workdir: Path, stem: str) -> bytes:
        """16 kHz audio -> the raw Codec2 bit file's bytes."""
        from claricodec.audio import pcm16
        raw, bits = workdir / f"{stem}.{self.name}.raw", workdir / f"{stem}.{self.name}.bit"
        pcm8 = soxr.resample(audio, RATE, 8000, quality="HQ")
        raw.write_bytes(pcm16(pcm8).tobytes())
        _run(["c2enc", self.mode, str(raw), str(bits)])
        raw.unlink()  # keep only the coded file: a full run is 100s of MB of PCM
        return bits.read_bytes()

    def decode_bits(self, payload: bytes, workdir: Path, stem: str) -> np.ndarray:
        """Codec2 bit file bytes -> 16 kHz audio."""
        bits, out = workdir / f"{stem}.{self.name}.in.bit", workdir / f"{stem}.{self.name}.out.raw"
        bits.write_bytes(payload)
        _run(["c2dec", self.mode, str(bits), str(out)])
        decoded = np.frombuffer(out.read_bytes(), dtype="<i2").astype(np.float32) / 32768
        bits.unlink(), out.unlink()
        return soxr.resample(decoded, 8000, RATE, quality="HQ").astype(np.float32)

    def code(self, audio: np.ndarray, workdir: Path, stem: str):
        from claricodec.evaluate import Coded
        start = time.perf_counter()
        payload = self.encode_bits(audio, workdir, stem)
        middle = time.perf_counter()
        decoded = self.decode_bits(payload, workdir, stem)
        end = time.perf_counter()
        return Coded(decoded, len(payload), middle - start, end - middle)


class OpusSystem:
    """Opus through opusenc/opusdec. The file is a complete Ogg Opus file: its size
    includes the Ogg pages and the OpusHead/OpusTags headers (~100-200 bytes)."""

    def __init__(self, kbps: float = 6):
        self.kbps, self.name = kbps, f"opus-{kbps:g}k"
        self.nominal_bps = kbps * 1000

    def code(self, audio: np.ndarray, workdir: Path, stem: str):
        from claricodec.evaluate import Coded
        wav, opus, out = (workdir / f"{stem}.{self.name}.{ext}" for ext in ("wav", "opus", "out.wav"))
        start = time.perf_counter()
        sf.write(wav, np.clip(audio, -1, 1), RATE, subtype="PCM_16")
        _run(["opusenc", "--quiet", "--bitrate", f"{self.kbps:g}", str(wav), str(opus)])
        middle = time.perf_counter()
        _run(["opusdec", "--quiet", "--rate", str(RATE), str(opus), str(out)])
        decoded, rate = sf.read(out, dtype="float32")
        end = time.perf_counter()
        wav.unlink(), out.unlink()
        assert rate == RATE
        return Coded(decoded, opus.stat().st_size, middle - start, end - middle)


SYSTEMS = ("claricodec", "codec2-450", "codec2-700c", "codec2-1200", "opus-6k")


def markdown(summary: dict, systems: list, asr_note: str) -> str:
    """The overall figures as a Markdown table."""
    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}"

    def speed(v):
        return "-" if v is None else f"{v:.0f}x"

    entry = summary["all"]
    label = {"decoded": "ClariCodec"}
    lines = [f"{entry['utterances']} utterances, {entry['seconds'] / 60:.1f} min of speech; "
             f"{asr_note}.", "",
             "| system | nominal bit/s | actual bit/s (file sizes) | WER % | ΔWER vs uncoded [95% CI] "
             "| CER % | encode x real time | decode x real time |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    orig = entry["systems"]["original"]
    lines.append(f"| uncoded | - | - | {pct(orig['wer'])} | - | {pct(orig['cer'])} | - | - |")
    for system in systems:
        s = entry["systems"][system.name]
        low, high = s["delta_wer_ci95"]
        delta = "-" if s["delta_wer"] is None else \
            f"{100 * s['delta_wer']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"
        lines.append(f"| {label.get(system.name, system.name)} | {system.nominal_bps:g} "
                     f"| {s['bps']:.0f} | {pct(s['wer'])} "
                     f"| {delta} | {pct(s['cer'])} | {speed(s['encode_x_realtime'])} "
                     f"| {speed(s['decode_x_realtime'])} |")
    sources = [group for group in summary if group != "all"]
    if len(sources) > 1:  # the same systems, WER / CER per corpus source
        names = ["original"] + [system.name for system in systems]
        lines += ["", "WER % / CER % per source:", "",
                  "| source | utterances | " + " | ".join(
                      "uncoded" if n == "original" else label.get(n, n) for n in names) + " |",
                  "|---|---:|" + "---:|" * len(names)]
        for group in sources:
            g = summary[group]
            cells = [f"{pct(g['systems'][n]['wer'])} / {pct(g['systems'][n]['cer'])}" for n in names]
            lines.append(f"| {group} | {g['utterances']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="ClariCodec vs Codec2 and Opus: WER, bit rate, speed.")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST,
                        help="corpus manifest.jsonl or folder (default: the shared dev split)")
    parser.add_argument("--limit", type=int, default=None, help="only N utterances, evenly spread through the manifest")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument("--save-hyps", type=Path, default=None,
                        help="write every reference and hypothesis as JSONL (see claricodec eval)")
    parser.add_argument("--source", default=None,
                        help="only these sources (comma-separated, e.g. arctic-cathy), before --limit")
    parser.add_argument("--judge", choices=("whisper", "sphinx"), default="whisper",
                        help="ASR that scores every system: Whisper (--asr, default tiny.en) or "
                             "PocketSphinx, another ASR family (the encoder and a training loss "
                             "use Whisper; a gain only Whisper hears would not be one)")
    parser.add_argument("--asr", default=None, help="Whisper model name or CTranslate2 folder")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--window", type=float, default=30.0,
                        help="ASR encoder window in seconds; 0 = fitted (faster)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for codec and ASR")
    parser.add_argument("--weights", default=None, help="ClariCodec weights directory")
    parser.add_argument("--encoder", default=None, help="ClariCodec encoder (stage1, rl, file)")
    parser.add_argument("--search", type=int, default=1,
                        help="ClariCodec encodes with `encode --search N` (e.g. 8; 1: plain)")
    parser.add_argument("--search-judge", choices=["states", "asr"], default="states",
                        help="what picks the search's candidate: Whisper's transcript, or its encoder states")
    parser.add_argument("--search-segment", type=float, default=None, metavar="SECONDS",
                        help="with --search: choose per segment of this many seconds (encode --search-segment)")
    parser.add_argument("--search-heat", type=float, default=None, metavar="FACTOR",
                        help="with --search: the draws' temperature as a multiple of the policy's "
                             "(default: 4 with --search-segment, else 1; session 22's figures: 1)")
    parser.add_argument("--fixed-windows", action="store_true",
                        help="encode a signal over 10 s in fixed 10 s windows, as before session 25, "
                             "instead of phrase by phrase")
    parser.add_argument("--phase-search", type=int, nargs="?", const=2, default=1, metavar="PHASES",
                        help="ClariCodec encodes as `claricodec encode --phase-search` does (2 frame "
                             "phases a phrase; PHASES: that many)")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated subset of {','.join(SYSTEMS)}")
    args = parser.parse_args()
    chosen = [name.strip().lower() for name in args.systems.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SYSTEMS))
    if unknown or not chosen:
        sys.exit(f"peers.py: unknown system(s) {', '.join(unknown) or '(none given)'}; "
                 f"choose from {','.join(SYSTEMS)}")

    for tool in ("c2enc", "c2dec", "opusenc", "opusdec"):
        if shutil.which(tool) is None:
            sys.exit(f"peers.py: {tool} not found (Debian packages codec2 and opus-tools)")
    import torch

    from claricodec.api import ClariCodec
    from claricodec.asr import ASR, EVAL
    from claricodec.evaluate import ClariCodecSystem, run, save_hyps, spread, summarize
    from claricodec.train.data import read_manifest

    torch.set_num_threads(args.threads)
    rows = read_manifest(args.manifest)
    if args.source:
        rows = [row for row in rows if row.get("source") in args.source.split(",")]
    rows = spread(rows, args.limit)
    if not rows:
        sys.exit(f"peers.py: no utterances in {args.manifest}")
    from claricodec.asr import ASRError
    from claricodec.weights import WeightsError
    try:
        codec = ClariCodec(args.weights, args.encoder, search=args.search, search_judge=args.search_judge,
                           search_segment=args.search_segment, search_heat=args.search_heat,
                           phrases=not args.fixed_windows, phase_search=args.phase_search)
        if args.judge == "sphinx":
            from claricodec.sphinx_asr import SphinxASR
            asr = SphinxASR()
        else:
            asr = ASR(args.asr, threads=args.threads)
    except (ASRError, WeightsError, RuntimeError, ValueError) as err:
        sys.exit(f"peers.py: {err}")
    if codec.info.get("status") != "trained":
        print(f"note: ClariCodec weights status is {codec.info.get('status')!r}, not a finished "
              "codec", file=sys.stderr)
    make = {"claricodec": lambda: ClariCodecSystem(codec), "codec2-450": lambda: Codec2System("450"),
            "codec2-700c": lambda: Codec2System("700C"), "codec2-1200": lambda: Codec2System("1200"),
            "opus-6k": lambda: OpusSystem(6)}
    systems = [make[name]() for name in SYSTEMS if name in chosen]
    options = replace(EVAL, beam_size=args.beam_size, window_seconds=args.window or None)
    done = [0]

    def progress():
        done[0] += 1
        if done[0] % 10 == 0 or done[0] == len(rows):
            print(f"{done[0]}/{len(rows)} utterances", file=sys.stderr, flush=True)

    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="claricodec-peers-") as workdir:
        results = run(rows, systems, asr, options, Path(workdir), progress, skipped=skipped)
    for note in skipped:
        print(f"skipped {note}", file=sys.stderr)
    if args.save_hyps:
        save_hyps(results, args.save_hyps)
    names = [s.name for s in systems]
    summary = summarize(results, names, {s.name: s.nominal_bps for s in systems})
    window = "fitted" if options.window_seconds is None else f"{options.window_seconds:g} s"
    judged = (f"{asr.name} (its default model and decoder)" if args.judge == "sphinx" else
              f"{asr.name} ({asr.compute_type}, beam {options.beam_size}, {window} window)")
    asr_note = (f"ASR {judged}; "
                f"ClariCodec weights {codec.info.get('model_id')} ({codec.info.get('status')})"
                f"{f', encode --search {args.search}' if args.search > 1 else ''}"
                f"{f' --search-segment {args.search_segment:g}' if args.search_segment else ''}"
                f"{f' (heat {codec.search.heat:g})' if args.search > 1 else ''}"
                f"{f', --phase-search {args.phase_search}' if args.phase_search > 1 else ''}; "
                f"{args.threads} CPU thread(s)")
    if args.json:
        print(json.dumps({"manifest": str(args.manifest), "asr": asr.config | {
            "beam_size": options.beam_size, "window_seconds": options.window_seconds},
            "weights": {k: codec.info.get(k) for k in ("model_id", "status", "encoder_name")},
            "skipped": skipped, "groups": summary}, indent=1))
    else:
        print(markdown(summary, systems, asr_note))


if __name__ == "__main__":
    main()
