"""Whisper's transcripts for untranscribed training utterances (`train pseudo-text`,
`train stage1 --pseudo-text`), with a stand-in ASR: which utterances are transcribed, what
is kept, and that training reads them only when asked."""
from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import claricodec.asr
from claricodec.asr import EVAL
from claricodec.cli.main import main
from claricodec.train.pseudo_text import PSEUDO_TEXT_FILE, corpus_style, transcribe_cache
from claricodec.train.stage1 import Corpus

from test_pack import prepared  # noqa: F401
from test_train_cli import schedules, stage1_args
from test_training import cache  # noqa: F401


class ListeningASR:
    """Answers each clip with the next of `answers`, and keeps what it heard."""

    def __init__(self, answers, **_):
        self.answers, self.heard = list(answers), []
        self.config = {"model": "stand-in"}

    def texts(self, clips, options):
        self.heard += clips
        return [self.answers.pop(0) for _ in clips]


@pytest.mark.parametrize("heard, kept", [
    ("It's late.", "IT'S LATE"),
    ("Twenty-one birds, \u2018they\u2019 said!", "TWENTY ONE BIRDS THEY SAID"),
    ("Please call me at 7.", None),  # a digit's spoken form is a guess; the CTC has none
    ("", None),
    (" ... ", None),
])
def test_whisper_text_is_written_as_the_corpus_writes_transcripts(heard, kept):
    assert corpus_style(heard) == kept


def test_only_untranscribed_utterances_are_transcribed_from_their_own_audio(cache, tmp_path):  # noqa: F811
    work = tmp_path / "train"
    shutil.copytree(cache, work)
    asr = ListeningASR(["Please call me back."])
    result = transcribe_cache(work, asr, EVAL)
    index = json.loads((work / "index.json").read_text())
    untranscribed = index[2]  # the fixture's third utterance has no text
    assert len(asr.heard) == 1
    pcm = np.load(work / "audio.npy")[untranscribed["offset"]:][:untranscribed["length"]]
    np.testing.assert_array_equal(asr.heard[0], pcm.astype(np.float32) / 32768)
    assert result["texts"] == {"u2": "PLEASE CALL ME BACK"}
    assert json.loads((work / PSEUDO_TEXT_FILE).read_text())["texts"] == result["texts"]

    dropped = transcribe_cache(work, ListeningASR(["At 7."]), EVAL)
    assert dropped["texts"] == {}


def test_pseudo_texts_fill_only_missing_transcripts_and_can_be_taken_back(cache):  # noqa: F811
    corpus = Corpus(cache)
    assert corpus.fill_texts({"u0": "NOT THIS", "u2": "PLEASE CALL ME"}) == 1
    assert [u["text"] for u in corpus.index] == ["THE QUICK BROWN FOX", "JUMPS OVER THE LAZY DOG",
                                                 "PLEASE CALL ME"]
    assert corpus.load([2], 8.0, random.Random(0))[3] == ["PLEASE CALL ME"]  # what the losses get
    assert corpus.fill_texts(None) == 0
    assert corpus.index[2]["text"] is None


def test_pseudo_text_command_and_stage1_flag(prepared, tmp_path, monkeypatch):  # noqa: F811
    runner = CliRunner()
    common = stage1_args(prepared, tmp_path)
    # Asked for before the transcripts exist: refused in one line, nothing trained.
    result = runner.invoke(main, common + ["--fresh", "--until", "1", "--steps", "10", "--pseudo-text"])
    assert result.exit_code != 0 and "claricodec train pseudo-text" in result.output
    assert not (tmp_path / "run" / "state.pt").exists()

    monkeypatch.setattr(claricodec.asr, "ASR", lambda **kw: ListeningASR(["Please call me."]))
    result = runner.invoke(main, ["train", "pseudo-text", "--cache", str(prepared)])
    assert result.exit_code == 0, result.output
    assert "transcripts for 1 of 1 untranscribed" in result.output

    result = runner.invoke(main, common + ["--fresh", "--until", "1", "--steps", "10",
                                           "--pseudo-text", "--max-seconds", "12"])
    assert result.exit_code == 0, result.output
    assert "1 untranscribed train utterances use Whisper's transcripts" in result.output
    result = runner.invoke(main, common + ["--until", "2"])  # a resumed run keeps both
    assert result.exit_code == 0, result.output
    assert "1 untranscribed train utterances use Whisper's transcripts" in result.output
    configs = schedules(tmp_path / "run")
    assert [c["pseudo_text"] for c in configs] == [True, True]
    assert [c["max_seconds"] for c in configs] == [12.0, 12.0]
    result = runner.invoke(main, common + ["--until", "3", "--no-pseudo-text"])
    assert result.exit_code == 0 and "Whisper's transcripts" not in result.output
