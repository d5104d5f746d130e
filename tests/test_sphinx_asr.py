"""PocketSphinx, the second judge (another ASR family), plugs into the evaluation."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pocketsphinx")

from claricodec.sphinx_asr import SphinxASR  # noqa: E402


def test_sphinx_hears_words_in_speech_and_none_in_silence(speech):
    asr = SphinxASR()
    texts = asr.texts([speech[0], np.zeros(16000 * 2, np.float32)])
    assert len(texts) == 2
    assert len(texts[0].split()) >= 4 and texts[1] == ""
    assert asr.text(speech[0]) == texts[0]  # same audio, same words
    assert asr.config["backend"] == "pocketsphinx"  # reports say which judge scored them
