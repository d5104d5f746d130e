"""Training plumbing on a tiny model and a three-utterance cache built here.

Quality is not judged here (that needs hours and the real corpus); these check that the
steps run, move the right parameters, resume, and export loadable weights.
"""
from __future__ import annotations

import json
import random
import threading
import zlib
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import claricodec.train.stage2

from claricodec.codec import CodecConfig
from claricodec.quantizer import FSQPolicy
from claricodec.train.stage1 import (SCORE_TERMS, Corpus, Stage1Config, Stage1Trainer,
                                     code_usage_loss, tensors_metadata)
from claricodec.train.stage2 import (Stage2Config, Stage2Trainer, categorical_kl,
                                     group_advantages, policy_loss)
from claricodec.weights import add_encoder, export_weights, load_codec

from conftest import DATA, TINY


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """Three utterances cut from the bundled clip, in the training cache layout."""
    out = tmp_path_factory.mktemp("cache")
    audio, _ = sf.read(DATA / "hello.wav", dtype="float32")
    pieces = [audio[:640 * 40], audio[640 * 40:640 * 90], audio[640 * 90:640 * 140]]
    texts = ["THE QUICK BROWN FOX", "JUMPS OVER THE LAZY DOG", None]
    index, offset = [], 0
    for i, (piece, text) in enumerate(zip(pieces, texts)):
        index.append({"id": f"u{i}", "source": "test", "speaker": "s", "text": text,
                      "offset": offset, "length": len(piece)})
        offset += len(piece)
    pcm = np.round(np.concatenate(pieces) * 32767).astype(np.int16)
    np.save(out / "audio.npy", pcm)
    (out / "index.json").write_text(json.dumps(index))
    return out


def test_usage_loss_is_zero_when_levels_are_used_evenly_and_large_when_collapsed():
    even = torch.tensor([-1.5, -0.5, 0.5, 1.5]).repeat(4, 25).view(1, 4, 100)
    mask = torch.ones(1, 100, dtype=torch.bool)
    collapsed = torch.full((1, 4, 100), -1.9)
    q = FSQPolicy((4, 4, 4, 4))
    assert code_usage_loss(q, even, mask, sharpness=0.05) < 0.01
    assert code_usage_loss(q, collapsed, mask) > 4.0


def test_speed_perturbation_changes_length_and_keeps_teacher_frames_and_text_aligned(tmp_path):
    rng = np.random.default_rng(0)
    frames = 40
    np.save(tmp_path / "audio.npy", (rng.normal(size=640 * frames) * 3000).astype(np.int16))
    # A teacher that ramps over time, so stretching it can be checked at the ends.
    ramp = np.linspace(0, 1, frames, dtype=np.float16)[:, None].repeat(384, 1)
    np.save(tmp_path / "teacher.npy", ramp)
    (tmp_path / "index.json").write_text(json.dumps(
        [{"id": "u", "text": "HELLO", "offset": 0, "length": 640 * frames}]))
    corpus = Corpus(tmp_path)
    plain = corpus.load([0], 8.0, random.Random(0), (0.0, 0.0))
    assert plain[0].shape[-1] == 640 * frames and plain[2].item() == frames
    lengths = set()
    for seed in range(6):
        audio, teacher, n, texts = corpus.load([0], 8.0, random.Random(seed), (0.0, 0.0),
                                               speed_perturb=0.1)
        assert audio.shape[-1] == 640 * n.item() == 640 * teacher.shape[1]
        assert 0.9 * frames - 1 <= n.item() <= frames / 0.9 + 1 and texts == ["HELLO"]
        assert teacher[0, 0, 0] < 0.05 and teacher[0, -1, 0] > 0.95
        lengths.add(n.item())
    assert len(lengths) > 2


def test_stage1_steps_resume_warmstart_and_export(cache, tmp_path):
    cfg = Stage1Config(steps=4, gan_start=2, batch_seconds=4.0, max_seconds=2.0, val_every=1000,
                       save_every=2, warmstart_every=2, channel_noise_share=1.0, log_every=1)
    make = lambda: Stage1Trainer(CodecConfig(**TINY.to_dict()), cfg, cache, cache,  # noqa: E731
                                 tmp_path / "run", warmstart=tmp_path / "ws.safetensors")
    trainer = make()
    before = {k: v.clone() for k, v in trainer.codec.state_dict().items()}
    trainer.run(until_step=3)
    lines = [json.loads(line) for line in (tmp_path / "run" / "train.log").read_text().splitlines()]
    assert lines[0] == {"step": 0, "config": asdict(cfg)}  # the schedule in force
    lines, validation = lines[1:4], lines[4]
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert validation["step"] == 3 and "score" in validation  # run() validates when it stops
    assert "adv" in lines[2] and "adv" not in lines[0]  # discriminators joined at gan_start
    assert trainer.step == 3 and (tmp_path / "ws.safetensors").exists()
    assert any(not torch.equal(before[k], v) for k, v in trainer.codec.state_dict().items())
    average = trainer.ema.state_dict()
    assert any(not torch.equal(average[k], v) for k, v in trainer.codec.state_dict().items())
    again = make()
    assert again.resume() and again.step == 3
    # A resumed or warm-started run keeps its own schedule, not the defaults.
    plain = lambda: Stage1Trainer(CodecConfig(**TINY.to_dict()), Stage1Config(),  # noqa: E731
                                  cache, cache, tmp_path / "run")
    resumed, warm_started = plain(), plain()
    assert resumed.resume()
    warm_started.load_warmstart(tmp_path / "ws.safetensors")
    for trainer_ in (resumed, warm_started):
        assert (trainer_.cfg.steps, trainer_.cfg.gan_start) == (4, 2)
    assert all(torch.equal(average[k], v) for k, v in again.ema.state_dict().items())
    warm = make()
    warm.load_warmstart(tmp_path / "ws.safetensors")
    assert warm.step == 3  # the first validation is always an improvement
    for k, v in warm.codec.state_dict().items():  # the warm-start holds the average, in fp16
        assert torch.allclose(v, average[k].half().float())
    again.adopt_ema()
    assert all(torch.equal(average[k], v) for k, v in again.codec.state_dict().items())
    temperature = again.calibrate(batches=2)
    assert 0 < temperature < 10
    export_weights(again.codec, tmp_path / "weights", {"steps": again.step})
    codec, info = load_codec(tmp_path / "weights")
    assert abs(codec.quantizer.temperature.item() - temperature) < 1e-6


def test_warmstart_is_replaced_only_when_validation_improves(cache, tmp_path, monkeypatch):
    cfg = Stage1Config(steps=5, gan_start=10, batch_seconds=4.0, max_seconds=2.0, val_every=1,
                       save_every=100, log_every=100)
    trainer = Stage1Trainer(CodecConfig(**TINY.to_dict()), cfg, cache, cache, tmp_path / "run",
                            warmstart=tmp_path / "ws.safetensors")
    scores = iter([(1.0, 0.5), (0.9, 0.5), (0.5, 0.2), (0.6, 0.3), (0.2, 0.5)])
    monkeypatch.setattr(trainer, "validate", lambda: dict(zip(("val_mel", "val_distill"),
                                                              next(scores))))
    written = []
    monkeypatch.setattr(trainer, "write_warmstart", lambda: written.append(trainer.step))
    trainer.run()
    # Scores (mel + 3 x distill): 2.5, 2.4, 1.1, 1.5, 1.7.
    assert written == [1, 2, 3]
    assert trainer.best_score == pytest.approx(1.1)
    resumed = Stage1Trainer(CodecConfig(**TINY.to_dict()), cfg, cache, cache, tmp_path / "run")
    assert resumed.resume() and resumed.best_score == pytest.approx(1.1)
    # The best score travels in the warm-start too: a run continued on another machine
    # (a GPU loan, no resume state) replaces it only with better weights.
    resumed.warmstart_path = tmp_path / "ws.safetensors"
    Stage1Trainer.write_warmstart(resumed)
    elsewhere = Stage1Trainer(CodecConfig(**TINY.to_dict()), cfg, cache, cache, tmp_path / "other")
    elsewhere.load_warmstart(tmp_path / "ws.safetensors")
    assert elsewhere.best_score == pytest.approx(1.1)


def test_validation_scores_the_characters_the_codes_carry(cache, tmp_path):
    cfg = Stage1Config(steps=2, gan_start=10, batch_seconds=4.0, max_seconds=2.0, ctc_weight=2.0)
    trainer = Stage1Trainer(CodecConfig(**TINY.to_dict()), cfg, cache, cache, tmp_path / "run")
    val = trainer.validate()
    # Two of the three cached utterances have transcripts: their CTC loss is the content term.
    assert 0 < val["val_ctc"] < 1e3
    assert trainer.validation_score(val) == pytest.approx(
        val["val_mel"] + 3.0 * val["val_distill"] + 2.0 * val["val_ctc"])
    assert trainer.validation_score({"val_mel": 1.0, "val_distill": 0.1}) == pytest.approx(1.3)


def test_validation_mel_counts_each_clip_and_not_the_padding_of_its_batch(cache, tmp_path):
    cfg = Stage1Config(steps=2, gan_start=10, batch_seconds=4.0, max_seconds=2.0)
    trainer = Stage1Trainer(CodecConfig(**TINY.to_dict()), cfg, cache, cache, tmp_path / "run")
    # A decoder that outputs silence: right on the zeros that pad the shorter clip, wrong on speech.
    class Silence(torch.nn.Module):
        def forward(self, codes):
            return torch.zeros(codes.shape[0], codes.shape[-1] * 640)
    trainer.ema.decoder = Silence()
    ids = list(range(3))
    audio, _, frames, _ = trainer.dev.load(ids, 8.0, random.Random(1), (0.0, 0.0))
    assert len(set(frames.tolist())) > 1  # the batch pads one clip
    expected = np.mean([trainer.mel_loss(torch.zeros(1, n * 640), audio[b:b + 1, :n * 640]).item()
                        for b, n in enumerate(frames.tolist())])
    assert trainer.validate()["val_mel"] == pytest.approx(expected, rel=1e-5)


def test_a_best_score_summed_from_other_terms_starts_the_gate_afresh(cache, tmp_path):
    from safetensors.torch import load_file, save_file
    cfg = Stage1Config(steps=2, gan_start=10, batch_seconds=4.0, max_seconds=2.0)
    trainer = Stage1Trainer(CodecConfig(**TINY.to_dict()), cfg, cache, cache, tmp_path / "run",
                            warmstart=tmp_path / "ws.safetensors")
    trainer.best_score = 1.5
    trainer.save()
    trainer.write_warmstart()
    # As the same run and warm-start would read from before the CTC term joined the score.
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=False)
    del state["score_terms"]
    torch.save(state, tmp_path / "run" / "state.pt")
    tensors = load_file(str(tmp_path / "ws.safetensors"))
    meta = json.loads(tensors_metadata(tmp_path / "ws.safetensors")["training"])
    assert meta["score_terms"] == SCORE_TERMS and meta["best_score"] == 1.5
    del meta["score_terms"]
    old_meta = {"training": json.dumps(meta), "codec_config": json.dumps(TINY.to_dict())}
    save_file(tensors, str(tmp_path / "old-ws.safetensors"), metadata=old_meta)

    resumed = Stage1Trainer(CodecConfig(**TINY.to_dict()), cfg, cache, cache, tmp_path / "run")
    assert resumed.resume() and resumed.best_score == float("inf")
    elsewhere = Stage1Trainer(CodecConfig(**TINY.to_dict()), cfg, cache, cache, tmp_path / "b")
    elsewhere.load_warmstart(tmp_path / "old-ws.safetensors")
    assert elsewhere.best_score == float("inf")
    elsewhere.load_warmstart(tmp_path / "ws.safetensors")
    assert elsewhere.best_score == 1.5


def test_minutes_limit_stops_the_run_then_validates_and_saves(cache, tmp_path):
    cfg = Stage1Config(steps=1000, gan_start=2000, batch_seconds=4.0, max_seconds=2.0,
                       val_every=1000, save_every=1000, log_every=1000)
    trainer = Stage1Trainer(CodecConfig(**TINY.to_dict()), cfg, cache, cache, tmp_path / "run")
    trainer.run(minutes=0.02)  # 1.2 s: a few steps of the tiny model, far from 1000
    assert 0 < trainer.step < 1000
    assert (tmp_path / "run" / "state.pt").exists()
    last = json.loads((tmp_path / "run" / "train.log").read_text().splitlines()[-1])
    assert last["step"] == trainer.step and "score" in last


def test_batches_load_ahead_and_a_resumed_run_trains_as_an_unbroken_one(cache, tmp_path,
                                                                         monkeypatch):
    # One utterance a batch: three batches an epoch, so the loader works ahead within one.
    cfg = Stage1Config(steps=5, gan_start=3, batch_seconds=2.0, max_seconds=2.0,
                       speed_perturb=0.1, channel_noise_share=0.5, val_every=1000,
                       save_every=1000, log_every=1000)
    on_main_thread = []
    load = Corpus.load

    def recording_load(self, *args, **kwargs):
        on_main_thread.append(threading.current_thread() is threading.main_thread())
        return load(self, *args, **kwargs)

    monkeypatch.setattr(Corpus, "load", recording_load)
    make = lambda run: Stage1Trainer(CodecConfig(**TINY.to_dict()), cfg, cache, None,  # noqa: E731
                                     tmp_path / run)
    unbroken = make("unbroken")
    assert not unbroken.load_ahead  # on the CPU only on request: the cores are busy stepping
    unbroken.load_ahead = True  # as on a GPU
    unbroken.run()
    assert unbroken.step == 5 and False in on_main_thread  # some batches came from the loader
    broken = make("broken")
    broken.run(until_step=2)  # stops mid-epoch, a batch loaded ahead and dropped
    resumed = make("broken")
    assert resumed.resume() and resumed.step == 2
    resumed.run()
    expected = unbroken.codec.state_dict()
    assert all(torch.equal(expected[k], v) for k, v in resumed.codec.state_dict().items())


def test_held_out_utterances_are_never_trained_on_and_the_setting_travels(cache, tmp_path,
                                                                         monkeypatch):
    cfg = Stage1Config(steps=8, gan_start=100, batch_seconds=2.0, max_seconds=2.0,
                       val_every=1000, save_every=1000, log_every=1000)
    loaded = []
    load = Corpus.load

    def recording_load(self, ids, *args, **kwargs):
        loaded.extend(self.index[i]["id"] for i in ids)
        return load(self, ids, *args, **kwargs)

    monkeypatch.setattr(Corpus, "load", recording_load)
    # Each trainer gets its own copy of the config: what comes back must come from the files.
    make = lambda: Stage1Trainer(CodecConfig(**TINY.to_dict()), replace(cfg), cache, None,  # noqa: E731
                                 tmp_path / "run", warmstart=tmp_path / "ws.safetensors")
    trainer = make()
    trainer.run(until_step=1)  # an epoch is batched and under way when the hold-out comes
    assert trainer.hold_out(["u1", "not-in-train"]) == 1
    assert all("u1" not in (trainer.train.index[i]["id"] for i in batch) for batch in trainer.pending)
    loaded.clear()
    trainer.run(until_step=4)  # more than one epoch of the two utterances left
    assert set(loaded) == {"u0", "u2"}
    trainer.save()
    trainer.write_warmstart()
    resumed = make()
    assert resumed.resume() and resumed.cfg.held_out == ["not-in-train", "u1"]
    warm = make()
    warm.load_warmstart(tmp_path / "ws.safetensors")
    assert warm.cfg.held_out == ["not-in-train", "u1"]
    loaded.clear()
    resumed.run()
    assert loaded and "u1" not in loaded


def test_discriminators_of_an_older_shape_start_afresh(cache, tmp_path):
    from claricodec.train.discriminators import Discriminators, SpectrogramDiscriminator
    logged = []
    trainer = Stage1Trainer(CodecConfig(**TINY.to_dict()), Stage1Config(), cache, None,
                            tmp_path / "run", log=logged.append)
    same = Discriminators()
    trainer.load_discriminators(same.state_dict())
    assert all(torch.equal(v, trainer.disc.state_dict()[k]) for k, v in same.state_dict().items())
    old = Discriminators()
    old.members[5] = SpectrogramDiscriminator(512, channels=32)  # the pre-slimming shape
    trainer.load_discriminators(old.state_dict(), {"state": {}, "param_groups": []})
    assert logged and "afresh" in logged[0]
    current = Discriminators().state_dict()
    assert {k: v.shape for k, v in trainer.disc.state_dict().items()} == \
        {k: v.shape for k, v in current.items()}
    assert trainer.opt_d.param_groups[0]["params"][0] is next(trainer.disc.parameters())


class FakeASR:
    """Deterministic stand-in for Whisper: the transcript depends on the audio's bytes, so
    different sampled codes get different rewards."""
    texts_pool = ["THE QUICK BROWN FOX", "THE QUICK", "JUMPS OVER THE LAZY DOG", ""]

    def texts(self, clips, options=None):
        return [self.texts_pool[zlib.crc32(np.asarray(c).tobytes()) % 4] for c in clips]

    def reference_logprob(self, clips, texts, options=None):
        return [-(zlib.crc32(np.asarray(c).tobytes()) % 100) / 10 for c in clips]


def test_grpo_helpers():
    assert torch.equal(group_advantages(torch.ones(8)), torch.zeros(8))
    adv = group_advantages(torch.tensor([0.0, 1.0, 0.5, 0.5]))
    assert abs(adv.mean().item()) < 1e-6 and abs(adv.std().item() - 1) < 1e-5
    logits = torch.randn(3, 4)
    assert torch.allclose(categorical_kl(logits, logits), torch.zeros(3), atol=1e-6)
    p, q = torch.tensor([0.7, 0.3]), torch.tensor([0.4, 0.6])
    exact = (p * (p / q).log()).sum()
    assert torch.allclose(categorical_kl(p.log(), q.log()), exact)
    # A positive advantage pushes the sampled action's log-probability up.
    logp = torch.zeros(2, 5, requires_grad=True)
    policy_loss(logp, logp.detach(), torch.tensor([1.0, -1.0]), 0.2).backward()
    assert (logp.grad[0] < 0).all() and (logp.grad[1] > 0).all()


@pytest.mark.parametrize("control", [False, True])
def test_stage2_moves_only_the_encoder(cache, tiny_weights, tmp_path, control):
    codec, _ = load_codec(tiny_weights, "stage1")
    codec.quantizer.temperature.fill_(0.5)
    decoder_before = {k: v.clone() for k, v in codec.decoder.state_dict().items()}
    encoder_before = {k: v.clone() for k, v in codec.encoder.state_dict().items()}
    cfg = Stage2Config(steps=2, group_size=4, utterances_per_step=1, eval_every=1, eval_count=2,
                       control=control, lr=1e-3)
    trainer = Stage2Trainer(codec, cfg, cache, tmp_path / "run", FakeASR(), None)
    loss, stats = trainer.utterance_loss(0)
    if control:
        assert stats["pg"] == 0.0
    trainer.run()
    assert trainer.step == 2
    assert all(torch.equal(decoder_before[k], v) for k, v in codec.decoder.state_dict().items())
    assert any(not torch.equal(encoder_before[k], v) for k, v in codec.encoder.state_dict().items())
    assert "eval_error" in (tmp_path / "run" / "train.log").read_text()
    assert trainer.reference_text(2) in FakeASR.texts_pool  # no transcript: ASR of original


def test_stage2_log_likelihood_reward(cache, tiny_weights, tmp_path):
    codec, _ = load_codec(tiny_weights, "stage1")
    codec.quantizer.temperature.fill_(0.5)
    cfg = Stage2Config(steps=1, group_size=4, utterances_per_step=1, eval_every=1, eval_count=2,
                       reward="loglik", lr=1e-3)

    class ScoringASR(FakeASR):
        """Remembers the log-likelihoods it handed out."""
        given: list[float] = []

        def reference_logprob(self, clips, texts, options=None):
            scores = super().reference_logprob(clips, texts, options)
            self.given.extend(scores)
            return scores

    asr = ScoringASR()
    trainer = Stage2Trainer(codec, cfg, cache, tmp_path / "run", asr, None)
    loss, stats = trainer.utterance_loss(0)
    # The rewards are the group's log-likelihoods (they differ, so advantages are non-zero).
    assert len(asr.given) == 4 and abs(stats["reward"] - np.mean(asr.given)) < 1e-5
    assert stats["reward_std"] > 0
    assert trainer.metric == "cer"  # the argmax-path check still counts characters
    trainer.run()
    assert '"eval_error"' in (tmp_path / "run" / "train.log").read_text()


def test_stage2_states_reward_scores_each_sample_against_the_original(cache, tiny_weights, tmp_path,
                                                                       monkeypatch):
    import claricodec.search
    codec, _ = load_codec(tiny_weights, "stage1")
    codec.quantizer.temperature.fill_(0.5)
    cfg = Stage2Config(steps=1, group_size=4, utterances_per_step=1, eval_every=1, eval_count=2,
                       reward="states", lr=1e-3)
    seen = []

    def similarity(original, decoded, states=None):
        seen.append((len(original), decoded.shape))
        return np.array([0.9, 0.7, 0.8, 0.6])

    monkeypatch.setattr(claricodec.search, "states_similarity", similarity)
    trainer = Stage2Trainer(codec, cfg, cache, tmp_path / "run", FakeASR(), None)
    loss, stats = trainer.utterance_loss(0)
    assert len(seen) == 1 and seen[0][1][0] == 4  # the original, and the group's 4 decodings
    assert seen[0][0] == trainer.corpus.index[0]["length"]
    assert abs(stats["reward"] - 0.75) < 1e-6 and stats["reward_std"] > 0
    assert torch.isfinite(loss)


def test_rl_encoder_ships_beside_stage1_and_keeps_model_id(tiny_weights, tmp_path):
    import shutil
    weights = tmp_path / "w"
    shutil.copytree(tiny_weights, weights)
    codec, info = load_codec(weights, "stage1")
    with torch.no_grad():
        codec.encoder.out[1].bias.add_(0.3)
    manifest = add_encoder(codec, weights, "rl", {"steps": 1})
    assert manifest["default_encoder"] == "rl" and manifest["model_id"] == info["model_id"]
    rl, rl_info = load_codec(weights)
    assert rl_info["encoder_name"] == "rl"
    assert torch.allclose(rl.encoder.out[1].bias, codec.encoder.out[1].bias, atol=1e-2)


def test_stage2_local_reward_credits_each_frame_with_its_neighbourhood(cache, tiny_weights, tmp_path,
                                                                       monkeypatch):
    import claricodec.search
    from claricodec.train.stage2 import LOCAL_FRAMES, group_advantages, local_rewards
    # Sample 0 sounds closer in the first half, sample 1 in the second: the advantages say
    # so frame by frame, where a whole-utterance reward would call them equal.
    frames = 4 * LOCAL_FRAMES
    cos = torch.full((2, 2 * frames), 0.5)
    cos[0, :frames] = cos[1, frames:] = 0.9
    adv = group_advantages(local_rewards(cos, frames))
    assert adv.shape == (2, frames)
    assert (adv[0, :LOCAL_FRAMES] > 0).all() and (adv[0, -LOCAL_FRAMES:] < 0).all()
    assert torch.allclose(adv[0], -adv[1])
    assert torch.equal(group_advantages(torch.ones(3, 5)), torch.zeros(3, 5))  # no signal
    codec, _ = load_codec(tiny_weights, "stage1")
    codec.quantizer.temperature.fill_(0.5)
    cfg = Stage2Config(steps=1, group_size=3, utterances_per_step=1, eval_every=1, eval_count=2,
                       reward="states-local", lr=1e-3)
    monkeypatch.setattr(claricodec.search, "states_similarity_frames",
                        lambda original, decoded, states=None, heard=None: np.random.default_rng(0).random(
                            (len(decoded), 2 * (len(original) // 640 + 1))))
    trainer = Stage2Trainer(codec, cfg, cache, tmp_path / "run", FakeASR(), None)
    loss, stats = trainer.utterance_loss(0)
    assert torch.isfinite(loss) and stats["reward_std"] > 0


def test_stage2_hotter_draws_move_more_codes_and_are_scored_at_their_own_temperature(
        cache, tiny_weights, tmp_path, monkeypatch):
    codec, _ = load_codec(tiny_weights, "stage1")
    codec.quantizer.temperature.fill_(0.05)
    shares, first_logps = {}, {}
    real_policy_loss = claricodec.train.stage2.policy_loss

    def recording_policy_loss(logp, old_logp, advantages, clip_eps):
        first_logps[heat] = (logp.detach(), old_logp)
        return real_policy_loss(logp, old_logp, advantages, clip_eps)

    monkeypatch.setattr(claricodec.train.stage2, "policy_loss", recording_policy_loss)
    for heat in (1.0, 8.0):
        torch.manual_seed(0)
        cfg = Stage2Config(steps=1, group_size=8, utterances_per_step=1, eval_count=2, heat=heat)
        trainer = Stage2Trainer(codec, cfg, cache, tmp_path / f"run{heat}", FakeASR(), None)
        assert torch.allclose(trainer.draw_temperature, torch.tensor(0.05 * heat))
        _, stats = trainer.utterance_loss(0)
        shares[heat] = stats["sample_share"]
    assert shares[8.0] > 2 * shares[1.0] + 0.02
    # Before any update the PPO ratio is exactly 1: the new log-probabilities are taken at
    # the temperature the draws were made at.
    for logp, old_logp in first_logps.values():
        assert torch.allclose(logp, old_logp, atol=1e-5)


def test_stage2_check_is_the_mean_per_clip_so_one_hallucinating_clip_counts_once(cache, tiny_weights,
                                                                                 tmp_path):
    codec, _ = load_codec(tiny_weights, "stage1")
    cfg = Stage2Config(steps=1, group_size=2, utterances_per_step=1, eval_count=3)
    trainer = Stage2Trainer(codec, cfg, cache, tmp_path / "run", FakeASR(), None)
    trainer.reference_text = lambda i: f"CLIP {i} SAYS HELLO"
    references = [trainer.reference_text(i) for i in trainer.eval_ids]
    assert len(references) == 3

    class Hallucinating(FakeASR):
        def texts(self, clips, options=None):  # every clip heard right, the first five times over
            return [" ".join([references[0]] * 5)] + references[1:]

    trainer.asr = Hallucinating()
    assert trainer.evaluate() == pytest.approx(1 / 3)  # its CER (4.0) clipped to 1, as the reward's


def test_stage2_resumes_an_older_run_by_scoring_its_best_encoder_with_the_per_clip_check(
        cache, tiny_weights, tmp_path):
    codec, _ = load_codec(tiny_weights, "stage1")
    cfg = Stage2Config(steps=1, group_size=2, utterances_per_step=1, eval_every=1, eval_count=2)
    trainer = Stage2Trainer(codec, cfg, cache, tmp_path / "run", FakeASR(), None)
    trainer.run()
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=False)
    del state["check"]  # as saved before session 24, when the best was a corpus error rate
    state["best_error"] = 7.0
    torch.save(state, tmp_path / "run" / "state.pt")
    again = Stage2Trainer(load_codec(tiny_weights, "stage1")[0], cfg, cache, tmp_path / "run", FakeASR(), None)
    assert again.resume()
    again.codec.encoder.load_state_dict(again.best_state)
    assert again.best_error == pytest.approx(again.evaluate())
