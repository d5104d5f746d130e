#!/usr/bin/env python3
"""What survives a round trip: one clip through ClariCodec and Codec2, as Whisper hears it.

    python3 bench/round_trip.py tests/data/hello.wav --out /tmp/round-trip

Prints a Markdown table (system, payload bit rate, Whisper's transcript of the decoded
audio); with --out it also writes each decoded signal as WAV, to listen to. Uses the peer
systems of bench/peers.py (Codec2 from the Debian package codec2).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from peers import RATE, Codec2System

MODES = ("450", "700C", "1300")  # 1300: the lowest Codec2 mode most listeners follow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", nargs="+", type=Path, help="audio files (any rate soundfile reads)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the decoded WAVs")
    parser.add_argument("--weights", default=None, help="ClariCodec weights directory")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--search", type=int, default=8,
                        help="also ClariCodec with `encode --search N` (0: leave that row out)")
    parser.add_argument("--search-segment", type=float, default=1.0, metavar="SECONDS",
                        help="and a row with `encode --search N --search-segment SECONDS` (0: leave it out)")
    args = parser.parse_args()
    if shutil.which("c2enc") is None:
        sys.exit("round_trip.py: c2enc not found (Debian package codec2)")
    import torch

    from claricodec.api import ClariCodec
    from claricodec.asr import ASR, EVAL
    from claricodec.audio import AudioError, load_audio
    from claricodec.evaluate import ClariCodecSystem

    torch.set_num_threads(args.threads)
    codec = ClariCodec(args.weights)
    asr = ASR(threads=args.threads)
    systems = [ClariCodecSystem(codec, "claricodec")]
    if args.search > 1:
        systems.append(ClariCodecSystem(ClariCodec(args.weights, search=args.search),
                                        f"claricodec-search{args.search}"))
        if args.search_segment > 0:
            segmented = ClariCodec(args.weights, search=args.search, search_segment=args.search_segment)
            systems.append(ClariCodecSystem(segmented, f"claricodec-search{args.search}-segment"
                                                       f"{args.search_segment:g}s"))
    systems += [Codec2System(m) for m in MODES]
    print(f"ASR {asr.name} (beam {EVAL.beam_size}, {EVAL.window_seconds:g} s window); "
          f"ClariCodec weights {codec.info.get('model_id')}\n")
    for path in args.audio:
        try:
            audio = load_audio(path, RATE)
        except AudioError as err:
            sys.exit(f"round_trip.py: {err}")
        seconds = len(audio) / RATE
        decoded = {"uncoded": (audio, None)}
        with tempfile.TemporaryDirectory() as workdir:
            for system in systems:
                coded = system.code(audio, Path(workdir), path.stem)
                decoded[system.name] = (coded.audio, 8 * coded.nbytes / seconds)
        texts = asr.texts([a for a, _ in decoded.values()], EVAL)
        print(f"**{path.name}** ({seconds:.1f} s)\n\n| system | bit/s (file) | Whisper hears |\n|---|---:|---|")
        for (name, (signal, bps)), text in zip(decoded.items(), texts):
            print(f"| {name} | {'-' if bps is None else f'{bps:.0f}'} | {text} |")
            if args.out:
                args.out.mkdir(parents=True, exist_ok=True)
                sf.write(args.out / f"{path.stem}.{name}.wav", np.clip(signal, -1, 1), RATE)
        print()


if __name__ == "__main__":
    main()
