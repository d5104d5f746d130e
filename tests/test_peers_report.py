"""bench/peers.py's report: system choice and the per-source table."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from claricodec.evaluate import Result, summarize

from conftest import load_bench

ROOT = Path(__file__).resolve().parents[1]


def result(uid, source, reference, original, decoded):
    return Result(id=uid, source=source, seconds=2.0, reference=reference, reference_kind="transcript",
                  hyps={"original": original, "decoded": decoded}, bytes={"decoded": 60},
                  encode_s={"decoded": 0.01}, decode_s={"decoded": 0.01})


def test_markdown_has_overall_and_per_source_rows():
    peers = load_bench("peers")

    class System:
        name, nominal_bps = "decoded", 200

    results = [result("a", "an4", "ONE TWO", "one two", "one"),
               result("b", "so762", "IT IS NOT FISH", "it is not fish", "it is not fish")]
    text = peers.markdown(summarize(results, ["decoded"], {"decoded": 200}, resamples=20),
                          [System()], "note")
    assert "| ClariCodec | 200 | 240 | 16.7 |" in text  # 1 error in 6 words; 120 B in 4 s
    assert "| an4 | 1 | 0.0 / 0.0 | 50.0 / 66.7 |" in text  # CER as evaluate.count_errors counts it
    assert "| so762 | 1 | 0.0 / 0.0 | 0.0 / 0.0 |" in text


def test_unknown_system_is_refused_before_any_work():
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "peers.py"), "--systems", "claricodec,mp3"],
                         capture_output=True, text=True)
    assert run.returncode != 0
    assert "unknown system(s) mp3" in run.stderr


def test_versus_reports_paired_differences_and_a_verdict():
    versus = load_bench("versus")
    row = lambda source, ours, peer: {"source": source, "reference": "ONE TWO THREE FOUR",  # noqa: E731
                                      "hyps": {"original": "one two three four",
                                               "decoded": ours, "codec2-700c": peer}}
    rows = [row("an4", "one two three four", "one")] * 10 + [row("so", "one two", "one two")] * 10
    c = versus.compare(rows, "codec2-700c", resamples=200)
    assert c["utterances"] == 20 and c["diff"] == -37.5  # 20 against 50 errors in 80 words
    assert c["high"] < 0
    table = versus.markdown(rows, resamples=200)
    assert "| codec2-700c | all | 20 | -37.5 |" in table and "ClariCodec lower" in table
    assert "| codec2-700c | so | 10 | +0.0 | [+0.0, +0.0] | not distinguishable |" in table


def test_versus_compares_two_checkpoints_on_the_same_utterances(tmp_path):
    versus = load_bench("versus")

    def rows(decoded):
        return [{"id": str(i), "source": "an4", "reference": "ONE TWO",
                 "hyps": {"original": "one two", "decoded": text}} for i, text in enumerate(decoded)]
    merged = versus.with_baseline(rows(["one two"] * 4), rows(["one"] * 4), "old.jsonl")
    assert versus.compare(merged, "baseline", resamples=50)["diff"] == -50.0
    assert [r["hyps"]["original"] for r in merged] == ["one two"] * 4  # the first file's own stay
    peers_file = [dict(r, hyps=dict(r["hyps"], **{"codec2-700c": "two"})) for r in rows(["one"] * 4)]
    merged = versus.with_baseline(rows(["one two"] * 4), peers_file, "peers.jsonl")
    assert versus.compare(merged, "codec2-700c", resamples=50)["diff"] == -50.0
    assert "| codec2-700c | all | 4 | -50.0 |" in versus.markdown(merged, resamples=50)
    for other in (rows(["one"] * 3), [dict(r, reference="THREE") for r in rows(["one"] * 4)]):
        with pytest.raises(SystemExit, match="old.jsonl"):
            versus.with_baseline(rows(["one two"] * 4), other, "old.jsonl")
    # A session script's file names its systems otherwise: pick one, or be told which there are.
    script_file = [dict(r, hyps={"original": "one two", "plain": "one", "seg": "one two"}) for r in rows(["x"] * 4)]
    merged = versus.with_baseline(rows(["one two"] * 4), script_file, "s.jsonl", "plain")
    assert versus.compare(merged, "baseline", resamples=50)["diff"] == -50.0
    with pytest.raises(SystemExit, match="no hypotheses of 'decoded'; it has original, plain, seg"):
        versus.with_baseline(rows(["one two"] * 4), script_file, "s.jsonl")


def test_encoders_compares_each_encoder_with_the_first_and_weights_mel_by_duration():
    encoders = load_bench("encoders")

    def res(uid, source, stage1, rl):
        return Result(id=uid, source=source, seconds=1.0, reference="ONE TWO THREE FOUR",
                      reference_kind="transcript",
                      hyps={"original": "one two three four", "stage1": stage1, "rl": rl},
                      bytes={"stage1": 30, "rl": 30}, encode_s={"stage1": 0.01, "rl": 0.01},
                      decode_s={"stage1": 0.01, "rl": 0.01})

    results = [res(str(i), "an4", "one two", "one two three") for i in range(10)]
    c = encoders.comparison(results, "stage1", "rl", resamples=100)
    assert c["diff"] == -25.0 and c["relative"] == -50.0  # 10 against 20 errors in 40 words
    assert c["high"] < 0

    class Fake:
        mel = {"000000": (1.0, 100), "000001": (4.0, 300)}

    assert encoders.mel_by_group(Fake(), {"all": ["000000", "000001"]}) == {"all": 3.25}
    table = encoders.markdown(summarize(results, ["stage1", "rl"], resamples=20),
                              {"stage1": {"all": 0.5, "an4": 0.5}, "rl": {"all": 0.4, "an4": 0.4}},
                              ["stage1", "rl"], {("rl", "all"): c})
    assert "| all | 10 | 0.0 / 0.0 | 50.0 / " in table and "| 0.400 |" in table
    assert "| rl | all | -25.0 |" in table and "| -50.0 % | rl lower |" in table


def test_heldout_manifest_keeps_the_listed_utterances_with_absolute_paths(tmp_path):
    corpus = tmp_path / "train"
    corpus.mkdir()
    rows = [{"id": f"u{i}", "path": f"s/u{i}.ogg", "text": "HI", "source": "s"} for i in range(3)]
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ids = tmp_path / "ids"
    ids.write_text("u2\nu0\n")
    script = [sys.executable, str(ROOT / "bench" / "heldout.py"), "--corpus", str(corpus), "--ids", str(ids)]
    run = subprocess.run(script, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    out = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["id"] for r in out] == ["u2", "u0"]
    assert out[0]["path"] == str((corpus / "s" / "u2.ogg").resolve())
    ids.write_text("u0\nnope\n")
    run = subprocess.run(script, capture_output=True, text=True)
    assert run.returncode != 0 and "1 ids not in" in run.stderr
