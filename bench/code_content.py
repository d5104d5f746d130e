#!/usr/bin/env python3
"""How many characters do the 8-bit codes carry? Read them straight off the codes.

Stage 1 trains a small character-CTC head on the quantised latent (training only; it lives
in the warm-start, not in the shipped weights). Its greedy read-out on dev clips, with no
language model, is a cheap probe of the codes' content, separate from how well the decoder
turns them into speech: if this CER is about what Whisper reads from the decoded audio,
the 8 bits are the bottleneck, not the decoder.

    python3 bench/code_content.py weights/warmstart/stage1-whisper.safetensors
    python3 bench/code_content.py weights/warmstart/stage1-whisper.safetensors --audio tests/data/hello.wav
    python3 bench/code_content.py weights/warmstart/stage1-whisper.safetensors --manifest /tmp/synth

With --audio or --manifest (any corpus manifest.jsonl or its folder; CER per source), the
codes are the ones `claricodec encode` would write for those files.
"""
from __future__ import annotations

import argparse
import random
from collections import defaultdict
from pathlib import Path

import torch

from claricodec.codec import Codec, CodecConfig
from claricodec.textnorm import cer
from claricodec.train.stage1 import (CHARS, Corpus, SemanticHeads, encoder_latent,
                                     read_warmstart, saved_codec_config, validation_ids)

DEFAULT_DEV = Path.home() / ".cache" / "claricodec" / "data" / "dev"


def load(warmstart: Path, config: CodecConfig | None = None) -> tuple[Codec, SemanticHeads]:
    """The averaged codec and the training heads from a stage-1 warm-start file."""
    parts = read_warmstart(warmstart)
    codec = Codec(config or saved_codec_config(None, warmstart) or CodecConfig())
    codec.load_state_dict(parts["codec"], strict=True)
    heads = SemanticHeads(len(codec.mode.levels))
    heads.load_state_dict(parts["heads"], strict=True)
    return codec.eval(), heads.eval()


def greedy_ctc(logits: torch.Tensor) -> str:
    """[C, T] logits -> text: best class per frame, repeats merged, blanks (0) dropped."""
    best = logits.argmax(0).tolist()
    return "".join(CHARS[k - 1] for i, k in enumerate(best) if k and (i == 0 or k != best[i - 1]))


@torch.no_grad()
def read_out(codec: Codec, heads: SemanticHeads, corpus: Corpus, ids: list[int]):
    """(references, read-outs) for the utterances `ids` that have a transcript."""
    refs, hyps = [], []
    for i in range(0, len(ids), 8):
        audio, teacher, frames, texts = corpus.load(ids[i:i + 8], 30.0, random.Random(0), (0.0, 0.0))
        latent = encoder_latent(codec, audio, teacher)
        codes, _ = codec.quantizer.quantize_ste(codec.quantizer.bound(latent))
        logits = heads.ctc(codes)
        for b, text in enumerate(texts):
            if text:
                refs.append(text)
                hyps.append(greedy_ctc(logits[b, :, :frames[b]]))
    return refs, hyps


@torch.no_grad()
def read_file(codec: Codec, heads: SemanticHeads, path: Path) -> str:
    """The read-out of one audio file's codes, as `claricodec encode` makes them."""
    from claricodec.audio import load_audio
    audio = load_audio(path, codec.mode.sample_rate)
    index = torch.as_tensor(codec.encode(audio)).long()[None]
    return greedy_ctc(heads.ctc(codec.quantizer.scaled(codec.quantizer.from_index(index)))[0])


def read_manifest_files(codec: Codec, heads: SemanticHeads, manifest: Path) -> None:
    """Print the read-out CER of a manifest's files, overall and per source."""
    from claricodec.train.data import read_manifest
    rows = [row for row in read_manifest(manifest) if row.get("text")]
    pairs = defaultdict(lambda: ([], []))
    for row in rows:
        refs, hyps = pairs[row["source"]]
        refs.append(row["text"])
        hyps.append(read_file(codec, heads, Path(row["path"])).strip())
    print(f"{len(rows)} utterances from {manifest}: character read-out of the codes "
          "(greedy CTC, no language model)\n\n| source | utterances | CER % |\n|---|---:|---:|")
    for source, (refs, hyps) in sorted(pairs.items()):
        print(f"| {source} | {len(refs)} | {100 * cer(refs, hyps):.1f} |")
    every = [sum((pair[k] for pair in pairs.values()), []) for k in (0, 1)]
    print(f"| all | {len(rows)} | {100 * cer(*every):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("warmstart", type=Path, help="a stage-1 warm-start (.safetensors)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_DEV, help="a prepared data split")
    parser.add_argument("--count", type=int, default=96, help="utterances, evenly spread")
    parser.add_argument("--show", type=int, default=5, help="examples to print")
    parser.add_argument("--audio", type=Path, default=None, help="read out this file's codes instead")
    parser.add_argument("--manifest", type=Path, default=None,
                        help="read out the codes of every transcribed file in this manifest instead")
    args = parser.parse_args()
    torch.set_num_threads(2)
    codec, heads = load(args.warmstart)
    if args.audio:
        print(f"{args.audio}: {read_file(codec, heads, args.audio).strip()!r}")
        return
    if args.manifest:
        read_manifest_files(codec, heads, args.manifest)
        return
    corpus = Corpus(args.cache, "front.npy" if codec.config.front == "whisper" else "teacher.npy")
    refs, hyps = read_out(codec, heads, corpus, validation_ids(len(corpus.index), args.count))
    print(f"{len(refs)} utterances from {args.cache}: character read-out of the codes, "
          f"CER {100 * cer(refs, hyps):.1f} % (greedy CTC, no language model)")
    for ref, hyp in list(zip(refs, hyps))[:args.show]:
        print(f"  {ref!r} -> {hyp.strip()!r}")


if __name__ == "__main__":
    main()
