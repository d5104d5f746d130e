"""PocketSphinx, the second judge (another ASR family), plugs into the evaluation."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pocketsphinx")

from claricodec.audio import load_audio  # noqa: E402
from claricodec.sphinx_asr import SphinxASR  # noqa: E402
from conftest import CORPUS  # noqa: E402


def test_sphinx_hears_words_in_speech_and_none_in_silence(speech):
    asr = SphinxASR()
    texts = asr.texts([speech[0], np.zeros(16000 * 2, np.float32)])
    assert len(texts) == 2
    assert len(texts[0].split()) >= 4 and texts[1] == ""
    assert asr.text(speech[0]) == texts[0]  # same audio, same words
    assert asr.config["backend"] == "pocketsphinx"  # reports say which judge scored them


# Two consecutive CMU ARCTIC train clips: a decoder reused from the first transcribed the
# second differently ("if there's ..." against "it there's ...").
ORDER_PAIR = ("arctic-cathy/cathy-arctic_a0020_1592748103.ogg",
              "arctic-cathy/cathy-arctic_a0021_1592748071.ogg")


def test_a_transcript_does_not_depend_on_the_clips_before_it():
    paths = [CORPUS / "train" / name for name in ORDER_PAIR]
    if not all(path.is_file() for path in paths):
        pytest.skip(f"no train corpus at {CORPUS} (set CLARICODEC_CORPUS)")
    first, second = (load_audio(path, 16000) for path in paths)
    asr = SphinxASR()
    alone = asr.texts([second])[0]
    assert alone and asr.texts([first, second])[1] == alone
