"""bench/code_content.py: the character read-out of the codes through the training CTC head."""
from __future__ import annotations

import torch

from claricodec.codec import CodecConfig
from claricodec.train.stage1 import CHARS, Corpus, Stage1Config, Stage1Trainer

from conftest import TINY, load_bench
from test_training import cache  # noqa: F401  (the three-utterance cache fixture)


def test_greedy_ctc_merges_repeats_and_drops_blanks():
    bench = load_bench("code_content")
    h, i = CHARS.index("H") + 1, CHARS.index("I") + 1
    frames = [h, h, 0, i, 0, i, i, 0]  # "H", blank, "I", blank, "I" (a repeat after a blank counts)
    logits = torch.full((len(CHARS) + 1, len(frames)), -5.0)
    for t, k in enumerate(frames):
        logits[k, t] = 5.0
    assert bench.greedy_ctc(logits) == "HII"


def test_read_out_from_a_warmstart_matches_the_trainers_heads(cache, tmp_path):  # noqa: F811
    bench = load_bench("code_content")
    trainer = Stage1Trainer(CodecConfig(**TINY.to_dict()), Stage1Config(), cache, cache,
                            tmp_path / "run", warmstart=tmp_path / "ws.safetensors")
    trainer.write_warmstart()
    codec, heads = bench.load(tmp_path / "ws.safetensors", CodecConfig(**TINY.to_dict()))
    corpus = Corpus(cache)
    refs, hyps = bench.read_out(codec, heads, corpus, [0, 1, 2])
    assert refs == ["THE QUICK BROWN FOX", "JUMPS OVER THE LAZY DOG"]  # the untranscribed one is skipped
    assert len(hyps) == 2 and all(set(h) <= set(CHARS) for h in hyps)
    # The same read-out from the trainer's own (fp32) heads: the file holds those heads.
    ref_hyps = bench.read_out(trainer.ema.eval(), trainer.heads.eval(), corpus, [0, 1, 2])[1]
    assert hyps == ref_hyps


def test_manifest_read_out_reports_each_source_and_skips_untranscribed_files(tmp_path, capsys):
    import json

    import numpy as np
    import soundfile as sf

    from claricodec.codec import Codec
    from claricodec.train.stage1 import SemanticHeads
    bench = load_bench("code_content")
    codec = Codec(CodecConfig(**TINY.to_dict())).eval()
    heads = SemanticHeads(len(codec.mode.levels)).eval()
    rows = [("a1", "voice-a", "HELLO"), ("a2", "voice-a", None), ("b1", "voice-b", "WORLD")]
    rng = np.random.default_rng(0)
    for name, source, text in rows:
        sf.write(tmp_path / f"{name}.wav", 0.1 * rng.standard_normal(16000), 16000)
    (tmp_path / "manifest.jsonl").write_text("".join(
        json.dumps({"id": n, "path": f"{n}.wav", "source": s, "text": t}) + "\n" for n, s, t in rows))
    bench.read_manifest_files(codec, heads, tmp_path)
    table = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [(cells[0], cells[1]) for cells in table[1:]] == [("| voice-a", "1"), ("| voice-b", "1"), ("| all", "2")]
