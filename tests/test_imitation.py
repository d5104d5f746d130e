"""Stage 2 by expert iteration: collecting what the search chose, and training toward it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner
from conftest import TINY

from claricodec.api import ClariCodec
from claricodec.cli.main import main
from claricodec.codec import CONTEXT, WINDOW, Codec, CodecConfig
from claricodec.search import ASRSearch
from claricodec.train.imitation import (ImitationConfig, ImitationTrainer, TargetError, TargetSet,
                                        agreement, collect, searched_pairs)

CANDIDATES = 6
WINNERS = [3, None, 5, 2]  # per window, in encoding order; None: a tie, the argmax stays


class CyclingASR:
    """The reference first, then one text per candidate; the next scripted winner hears it."""

    def __init__(self):
        self.calls = 0

    def texts(self, clips, options=None):
        winner = WINNERS[self.calls % len(WINNERS)]
        self.calls += 1
        hyps = ["zzz"] * (len(clips) - 1)
        if winner is not None:
            hyps[winner] = "the reference"
        return ["the reference", *hyps]


def searched(weights: Path, speech, root: Path) -> tuple[Path, Path]:
    """audio/ with a short clip (16 kHz) and a 2.5-window one (44.1 kHz), and codes/ with
    their search-encoded .cc files."""
    audio, rate = speech
    (root / "audio" / "sub").mkdir(parents=True)
    (root / "codes" / "sub").mkdir(parents=True)
    sf.write(root / "audio" / "short.wav", audio, rate)
    long = np.tile(audio, int(25 * rate / len(audio)) + 1)[:int(25.3 * rate)]
    from claricodec.audio import resample
    sf.write(root / "audio" / "sub" / "long.wav", resample(long, rate, 44100), 44100)
    codec = ClariCodec(weights, phrases=False)  # what `train targets` replays: fixed windows
    codec.search = ASRSearch(codec.model, CyclingASR(), candidates=CANDIDATES)
    for name in ("short", "sub/long"):
        from claricodec.stream_io import open_audio, resampled_blocks
        blocks = resampled_blocks(open_audio(str(root / "audio" / f"{name}.wav")), 16000)
        (root / "codes" / f"{name}.cc").write_bytes(b"".join(codec.encode_blocks(blocks)))
    return root / "audio", root / "codes"


@pytest.fixture(scope="module")
def target_set(tiny_weights, speech, tmp_path_factory):
    root = tmp_path_factory.mktemp("imitation")
    audio_dir, code_dir = searched(tiny_weights, speech, root)
    model = ClariCodec(tiny_weights).model
    meta = collect(model, searched_pairs(audio_dir, code_dir), root / "targets", CANDIDATES)
    return root, meta


def test_collect_finds_the_candidate_the_search_kept_and_a_matched_control(target_set, tiny_weights):
    root, meta = target_set
    targets = TargetSet(root / "targets")
    # Files in sorted order: short (window 0), then sub/long (windows 0, 1, 2).
    windows = targets.windows
    assert [(Path(w["file"]).stem, w["window"]) for w in windows] == [("short", 0), ("long", 0), ("long", 1), ("long", 2)]
    assert [w["expert"] for w in windows] == [3, 0, 5, 2]
    assert meta == {"files": 2, "windows": 4, "moved_windows": 3, "candidates": CANDIDATES,
                    "search_seed": 0, "control_seed": 1}
    for w in windows:  # the control moves exactly the windows the search moved
        assert (w["control"] == 0) == (w["expert"] == 0) and 0 <= w["control"] < CANDIDATES
    model = ClariCodec(tiny_weights).model
    q = model.quantizer
    from claricodec.train.imitation import read_codes
    for i, w in enumerate(windows):
        held = read_codes(w["file"])[w["window"] * WINDOW:][:w["frames"]]
        expert = q.to_index(targets.levels["expert"][i:i + 1, :, :w["frames"]])[0].numpy()
        assert np.array_equal(expert, held)
        signal = targets.audio[w["offset"]:w["offset"] + w["length"]]
        plain = q.to_index(targets.levels["argmax"][i:i + 1, :, :w["frames"]])[0].numpy()
        assert np.array_equal(plain, model.encode(signal)[w["window"] * WINDOW:][:w["frames"]])
    assert windows[-1]["frames"] == -(-(windows[-1]["length"] - 2 * WINDOW * 640) // 640)


def test_a_cropped_window_gives_the_same_latent_as_the_full_analysis_window(target_set, tiny_weights):
    """Training encodes only a window's valid frames plus context, not the padded 12 s."""
    root, _ = target_set
    targets = TargetSet(root / "targets")
    model = ClariCodec(tiny_weights).model
    hop = model.mode.hop
    for i, w in enumerate(targets.windows):
        audio, frames = targets.batch([i], hop)
        cropped = model.quantizer.bound(model.encoder(audio))[:, :, CONTEXT:CONTEXT + w["frames"]]
        signal = targets.audio[w["offset"]:w["offset"] + w["length"]]
        start = (w["window"] * WINDOW - CONTEXT) * hop
        full = np.zeros((2 * CONTEXT + WINDOW) * hop, np.float32)
        piece = signal[max(start, 0):start + len(full)]
        full[max(-start, 0):max(-start, 0) + len(piece)] = piece
        reference = model.window_latent(full)[:, :, :w["frames"]]
        assert int(frames[0]) == w["frames"]
        torch.testing.assert_close(cropped, reference, atol=1e-4, rtol=0)


def test_codes_from_other_weights_or_corrupt_files_are_refused(target_set, tiny_weights, weights_factory, tmp_path):
    root, _ = target_set
    other = ClariCodec(weights_factory(tmp_path / "other", seed=1)).model
    with pytest.raises(TargetError, match="none of the 6 candidates"):
        collect(other, searched_pairs(root / "audio", root / "codes"), tmp_path / "t", CANDIDATES)
    bad = tmp_path / "codes"
    bad.mkdir()
    (bad / "short.cc").write_bytes(b"CC\x01garbage")
    with pytest.raises(TargetError, match="short.cc"):
        collect(other, searched_pairs(root / "audio", bad), tmp_path / "t", CANDIDATES)
    (bad / "nothing.cc").write_bytes(b"")
    with pytest.raises(TargetError, match="no audio named nothing"):
        searched_pairs(root / "audio", bad)
    with pytest.raises(TargetError, match="not a target set"):
        TargetSet(tmp_path)
    assert not (tmp_path / "t").exists()
    model = ClariCodec(tiny_weights).model
    pairs = searched_pairs(root / "audio", root / "codes")[:1]
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "notes.txt").write_text("mine")
    with pytest.raises(TargetError, match="not a target set; choose another"):
        collect(model, pairs, tmp_path / "t", CANDIDATES)  # never replaces a folder it did not write
    assert collect(model, pairs, tmp_path / "u", CANDIDATES)["files"] == 1
    assert collect(model, pairs * 2, tmp_path / "u", CANDIDATES)["files"] == 2  # a set is replaced whole
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("u")) == ["u"]


def test_agreement_counts_moved_and_kept_levels():
    old = torch.tensor([[[0, 1, 2, 3]]])
    target = torch.tensor([[[1, 1, 2, 0]]])  # leaves the argmax at frames 0 and 3
    new = torch.tensor([[[1, 1, 3, 3]]])  # follows at frame 0, not 3; breaks frame 2
    mask = torch.tensor([[True, True, True, True]])
    assert agreement(new, old, target, mask) == {"moved": 0.5, "kept": 0.5, "changed": 0.5}
    mask = torch.tensor([[True, True, False, False]])  # frames past the end do not count
    assert agreement(new, old, target, mask) == {"moved": 1.0, "kept": 1.0, "changed": 0.5}


def trainer(weights: Path, root: Path, run_dir: Path, **cfg) -> ImitationTrainer:
    model = ClariCodec(weights).model
    config = ImitationConfig(batch_windows=2, val_share=0.0, eval_every=1000, **cfg)
    return ImitationTrainer(model, config, TargetSet(root / "targets"), run_dir, log=lambda *_: None)


def test_a_whisper_front_encoder_is_refused(target_set, tmp_path):
    """Its states change when a window is cropped, so imitation would train other states
    than encoding computes (as stage 2 did until session 21)."""
    root, _ = target_set
    model = Codec(CodecConfig(**(TINY.to_dict() | {"front": "whisper", "front_depth": 1})))
    with pytest.raises(TargetError, match="mel-front"):
        ImitationTrainer(model, ImitationConfig(), TargetSet(root / "targets"), tmp_path / "a")


def test_training_follows_the_target_and_resumes_exactly(target_set, tiny_weights, tmp_path):
    root, _ = target_set
    # An unscaled random encoder: the fixture's is saturated on purpose (varied codes for
    # plumbing), which leaves tanh no gradient. Targets are labels; any encoder can learn them.
    torch.manual_seed(0)
    model = Codec(CodecConfig(**TINY.to_dict()))
    config = ImitationConfig(batch_windows=1, val_share=0.0, lr=1e-3, steps=20, kl_weight=0.0, mel_weight=0.0)
    t = ImitationTrainer(model, config, TargetSet(root / "targets"), tmp_path / "a", log=lambda *_: None)
    t.train_ids = [0]  # one window: the repeated clip's windows ask for different draws
    target = t.targets.levels["expert"][[0]]

    def followed() -> float:
        z, mask, _, _ = t._latents([0])
        frames = int(mask.sum())
        return float((model.quantizer.argmax(z)[..., :frames] == target[..., :frames]).float().mean())

    before, ce_before = followed(), t.batch_loss([0])[1]["ce"]
    t.run()
    after, ce_after = followed(), t.batch_loss([0])[1]["ce"]
    assert after > before + 0.2 and ce_after < 0.7 * ce_before, (before, after, ce_before, ce_after)

    whole = trainer(tiny_weights, root, tmp_path / "b", steps=4)
    whole.run()
    half = trainer(tiny_weights, root, tmp_path / "c", steps=4)
    half.run(until=2)
    resumed = trainer(tiny_weights, root, tmp_path / "c", steps=4)
    assert resumed.resume() and resumed.step == 2
    resumed.run()
    for key, value in whole.codec.encoder.state_dict().items():
        assert torch.equal(value, resumed.codec.encoder.state_dict()[key]), key
    with pytest.raises(TargetError, match="other settings"):
        trainer(tiny_weights, root, tmp_path / "c", steps=4, lr=1e-4).resume()
    assert trainer(tiny_weights, root, tmp_path / "c", steps=8).resume()  # more steps: fine


def test_cli_targets_then_imitate_adds_an_rl_encoder_old_files_still_decode(target_set, tiny_weights, tmp_path):
    root, _ = target_set
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights, weights)
    run = CliRunner()
    out = run.invoke(main, ["train", "targets", str(root / "audio"), str(root / "codes"), "--out",
                            str(tmp_path / "t"), "--weights", str(weights), "--candidates", str(CANDIDATES)])
    assert out.exit_code == 0, out.output
    assert "4 windows from 2 files; the search moved 3" in out.output
    common = [str(tmp_path / "t"), "--weights", str(weights), "--steps", "2", "--batch", "2", "--device", "cpu"]
    out = run.invoke(main, ["train", "imitate", *common, "--run-dir", str(tmp_path / "ctl"), "--control"])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "ctl" / "encoder-control.safetensors").exists()
    assert "rl" not in json.loads((weights / "manifest.json").read_text())["encoders"]
    out = run.invoke(main, ["train", "imitate", *common, "--run-dir", str(tmp_path / "rl")])
    assert out.exit_code == 0, out.output
    manifest = json.loads((weights / "manifest.json").read_text())
    assert manifest["default_encoder"] == "rl"
    assert manifest["encoders"]["rl"]["training"]["target"] == "expert"
    assert manifest["model_id"] == json.loads((tiny_weights / "manifest.json").read_text())["model_id"]
    audio, rate = ClariCodec(weights).decode((root / "codes" / "short.cc").read_bytes())
    assert rate == 16000 and len(audio) > 0


def test_cli_errors_are_one_line(target_set, tmp_path):
    root, _ = target_set
    empty = tmp_path / "empty"
    empty.mkdir()
    run = CliRunner()
    out = run.invoke(main, ["train", "targets", str(root / "audio"), str(empty), "--out", str(tmp_path / "t")])
    assert out.exit_code == 1 and "no .cc files" in out.output
    out = run.invoke(main, ["train", "imitate", str(empty), "--steps", "1", "--device", "cpu"])
    assert out.exit_code == 1 and "not a target set" in out.output
    assert "Traceback" not in out.output
