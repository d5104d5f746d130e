#!/usr/bin/env python3
"""WER on long files: utterances coded end to end as one file, then scored one by one.

    python3 bench/long_files.py /tmp/heldout200.jsonl --search 8 --search-segment 1 --save-hyps F

Every other benchmark codes each utterance as its own file, and the corpus's files are
short (dev: 1-8 s), so an analysis window is mostly one utterance. A user's recordings
are longer: several 10 s windows, each full of speech. Here groups of --per-file
utterances from a manifest are joined (with --gap seconds of silence between them) into
one signal, which goes through a real .cc file and back; the decoded file is cut at the
same samples (the codec keeps timing to the sample) and each utterance is transcribed
and scored on its own, by the same ASR and settings as `claricodec eval`. The --save-hyps
file has the format of `peers.py --save-hyps` (ClariCodec as "decoded"), so
`bench/versus.py F --baseline G` compares two settings utterance by utterance.
Prints a Markdown summary on stdout, progress on stderr.

`--per-file 1 --gap 0 --lead 0.02` codes each utterance as its own file with 20 ms of
silence before it: half a frame, so every frame boundary moves against the speech. On
speakers the encoder never heard that changes nothing measurable; on train utterances it
costs 3 points, which is memorisation (docs/results.md, "Long files").
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from claricodec.evaluate import ORIGINAL, RATE, Result, save_hyps, summarize

CLARICODEC = "decoded"


def join(rows: list[dict], gap: float, lead: float = 0.0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The utterances end to end, each with `lead` s of silence before it and `gap` s
    after it -> (signal, [(first sample, end sample)] of each)."""
    from claricodec.audio import load_audio
    pieces, spans, at = [], [], 0
    before, after = (np.zeros(round(s * RATE), np.float32) for s in (lead, gap))
    for row in rows:
        audio = load_audio(row["path"], RATE)
        spans.append((at + len(before), at + len(before) + len(audio)))
        pieces += [before, audio, after]
        at += len(before) + len(audio) + len(after)
    return np.concatenate(pieces), spans


def phrase_rule(text: str) -> tuple[int, ...]:
    """'LONG_PAUSE,MIN_PHRASE[,MAX_PHRASE]' -> codec.PhraseEncoder.rule; knobs left out
    keep the shipped values."""
    from claricodec.codec import PhraseEncoder
    given = tuple(int(v) for v in text.split(","))
    return given + PhraseEncoder.rule[len(given):]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", help="JSONL manifest (id, path, text, source), e.g. from bench/heldout.py")
    parser.add_argument("--per-file", type=int, default=10, help="utterances joined into one file")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds of silence after each utterance")
    parser.add_argument("--lead", type=float, default=0.0, help="seconds of silence before each utterance")
    parser.add_argument("--noise", type=float, default=None, metavar="SNR",
                        help="pink noise over each whole file, pauses too (a noisy room), SNR dB under its speech")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--search", type=int, default=1, help="encode --search N (1: plain)")
    parser.add_argument("--search-segment", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--fixed-windows", action="store_true",
                        help="encode a signal over 10 s in fixed 10 s windows, as before session 25, "
                             "instead of phrase by phrase")
    parser.add_argument("--phase-search", type=int, nargs="?", const=2, default=1, metavar="PHASES",
                        help="ClariCodec encodes as `claricodec encode --phase-search` does (2 frame "
                             "phases a phrase; PHASES: that many)")
    parser.add_argument("--phrase-rule", default=None, metavar="LONG_PAUSE,MIN_PHRASE[,MAX_PHRASE]",
                        help="cut phrases with this codec.phrase_frames rule (frames) instead of the "
                             "shipped one (see bench/phrase_cuts.py)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save-hyps", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from claricodec.api import ClariCodec
    from claricodec.asr import ASR, EVAL
    from claricodec.codec import PhraseEncoder
    torch.set_num_threads(args.threads)
    if args.phrase_rule:
        PhraseEncoder.rule = phrase_rule(args.phrase_rule)
    rows = [json.loads(line) for line in Path(args.manifest).read_text().splitlines() if line.strip()]
    codec = ClariCodec(args.weights, search=args.search, search_segment=args.search_segment,
                       phrases=not args.fixed_windows, phase_search=args.phase_search)
    asr = ASR(threads=args.threads)
    results, encode_s, decode_s, seconds, nbytes = [], 0.0, 0.0, 0.0, 0
    groups = [rows[i:i + args.per_file] for i in range(0, len(rows), args.per_file)]
    for number, group in enumerate(groups, 1):
        signal, spans = join(group, args.gap, args.lead)
        if args.noise is not None:
            from conditions import active_rms, pink_noise
            noise = pink_noise(len(signal), np.random.default_rng(number)) * active_rms(signal) * 10 ** (-args.noise / 20)
            signal = np.clip(signal + noise, -1, 1).astype(np.float32)
        start = time.perf_counter()
        data = codec.encode(signal, RATE)
        middle = time.perf_counter()
        decoded, rate = codec.decode(data)
        encode_s, decode_s = encode_s + middle - start, decode_s + time.perf_counter() - middle
        assert rate == RATE and len(decoded) == len(signal)
        seconds, nbytes = seconds + len(signal) / RATE, nbytes + len(data)
        clips, made = [], []
        for row, (first, end) in zip(group, spans):
            result = Result(str(row["id"]), row.get("source") or "unknown", (end - first) / RATE,
                            row.get("text") or "", "transcript" if row.get("text") else "asr")
            clips += [signal[first:end], decoded[first:end]]
            made.append(result)
        texts = asr.texts(clips, EVAL)
        for i, result in enumerate(made):
            result.hyps = {ORIGINAL: texts[2 * i], CLARICODEC: texts[2 * i + 1]}
            if result.reference_kind == "asr":
                result.reference = result.hyps[ORIGINAL]
            # The file's size and time, shared out by length (scores only use the hyps).
            share = result.seconds / (sum(r.seconds for r in made) or 1)
            result.bytes = {CLARICODEC: round(len(data) * share)}
            result.encode_s = {CLARICODEC: (middle - start) * share}
            result.decode_s = {CLARICODEC: 0.0}
            results.append(result)
        print(f"file {number}/{len(groups)}: {len(signal) / RATE:.1f} s, encoded at "
              f"{len(signal) / RATE / (middle - start):.2f}x real time", file=sys.stderr)
    if args.save_hyps:
        save_hyps(results, args.save_hyps)
    overall = summarize(results, [CLARICODEC])["all"]
    print(f"{len(groups)} files of {args.per_file} utterances ({seconds / 60:.1f} min; "
          f"{args.lead:g} s of silence before each, {args.gap:g} s after"
          + (f", pink noise {args.noise:g} dB under the speech throughout" if args.noise is not None else "") + "), "
          f"`--search {args.search}`" + (f" `--search-segment {args.search_segment:g}`" if args.search_segment else "")
          + (", fixed 10 s windows" if args.fixed_windows else
             f", phrase by phrase (rule {', '.join(map(str, PhraseEncoder.rule))})")
          + (f", `--phase-search {args.phase_search}`" if args.phase_search > 1 else "")
          + f"; ASR tiny.en (beam 5, 30 s window), {args.threads} thread(s)\n")
    print("| system | WER % | CER % | bit/s (files) | encode × real time | decode × real time |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in (ORIGINAL, CLARICODEC):
        s = overall["systems"][name]
        speed = (f"{8 * nbytes / seconds:.0f} | {seconds / encode_s:.2f} | {seconds / decode_s:.0f}"
                 if name == CLARICODEC else "- | - | -")
        print(f"| {'uncoded' if name == ORIGINAL else 'ClariCodec'} | {100 * s['wer']:.1f} | {100 * s['cer']:.1f} | {speed} |")


if __name__ == "__main__":
    main()
