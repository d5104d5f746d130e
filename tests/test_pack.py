"""Packing a slice of the training cache for a borrowed GPU machine, and unpacking it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from claricodec.cli.main import main
from claricodec.train.pack import (PackError, basis_bytes, estimated_bytes, opus_bytes_per_second, part_ids,
                                   project_teacher, quantize_teacher, restore_teacher,
                                   teacher_basis, teacher_frame_bytes, unpack_split)
from claricodec.train.stage1 import Corpus

from test_training import cache  # noqa: F401  (the three-utterance cache fixture)


@pytest.fixture
def prepared(cache, tmp_path):  # noqa: F811
    """A prepared data cache (train/ and dev/) with teacher states (of low rank, as Whisper's
    are: most of their variance lies in a few directions)."""
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(6, 384))
    for split in ("train", "dev"):
        shutil.copytree(cache, root / split)
        frames = len(np.load(root / split / "audio.npy")) // 640
        teacher = (rng.normal(size=(frames, 6)) @ directions + 3).astype(np.float16)
        teacher[:3] = 0  # frames without a teacher state stay zero
        np.save(root / split / "teacher.npy", teacher)
    return root


def test_parts_are_disjoint_slices_within_the_budget():
    index = [{"length": 16000 * (1 + i % 7)} for i in range(200)]
    budget = 200_000
    parts, k = [], 0
    while True:
        try:
            parts.append(part_ids(index, budget, k))
        except PackError as err:
            assert f"part {k} does not exist" in str(err)
            break
        k += 1
    assert len(parts) > 3
    assert sorted(i for p in parts for i in p) == list(range(200))
    for p in parts:
        assert sum(estimated_bytes(index[i]["length"]) for i in p) <= budget
    assert part_ids(index, budget, 1) == parts[1]  # the same shuffle every time


def test_teacher_int8_round_trip():
    rng = np.random.default_rng(1)
    teacher = rng.normal(size=(50, 384)).astype(np.float32) * rng.uniform(0.1, 10, size=(50, 1))
    teacher[7] = 0
    q, scale = quantize_teacher(teacher)
    assert q.dtype == np.int8 and scale[7] == 0 and not q[7].any()
    restored = q.astype(np.float32) * scale[:, None]
    assert np.all(np.abs(restored - teacher) <= scale[:, None] / 2 + 1e-6)


def test_teacher_components_round_trip_and_frames_without_a_state_stay_empty():
    rng = np.random.default_rng(2)
    states = rng.normal(size=(300, 10)) @ rng.normal(size=(10, 384)) + rng.normal(size=384)
    states += 0.01 * rng.normal(size=states.shape)
    states[[0, 50]] = 0
    mean, basis = teacher_basis(states, 12)
    assert basis.shape == (12, 384) and np.allclose(basis @ basis.T, np.eye(12), atol=1e-4)
    q, scale = quantize_teacher(project_teacher(states, mean, basis))
    assert q.shape == (300, 12) and scale[0] == scale[50] == 0
    restored = restore_teacher(q.astype(np.float32) * scale[:, None], mean, basis)
    assert not restored[[0, 50]].any()
    kept = np.abs(states).sum(1) > 0
    cos = (restored * states).sum(1) / (np.linalg.norm(restored, axis=1) * np.linalg.norm(states, axis=1) + 1e-9)
    assert np.all(cos[kept] > 0.999)
    # Fewer components than the states' rank lose part of them: a real projection.
    mean, basis = teacher_basis(states, 3)
    restored = restore_teacher(project_teacher(states, mean, basis), mean, basis)
    assert np.abs(restored - states)[kept].mean() > 0.1


def test_fewer_teacher_components_fit_more_speech_in_a_part():
    index = [{"length": 16000 * (1 + i % 7)} for i in range(400)]
    whole = part_ids(index, 2_000_000, 0)
    reduced = part_ids(index, 2_000_000 - basis_bytes(128), 0, frame_bytes=teacher_frame_bytes(128))
    assert len(reduced) > 1.5 * len(whole)


def test_excluded_utterances_are_in_no_part():
    index = [{"id": f"u{i}", "length": 16000 * (1 + i % 7)} for i in range(200)]
    held_out = frozenset(f"u{i}" for i in range(0, 200, 3))
    packed = []
    for k in range(50):
        try:
            packed += part_ids(index, 200_000, k, exclude=held_out)
        except PackError:
            break
    assert sorted(index[i]["id"] for i in packed) == sorted({u["id"] for u in index} - held_out)


def test_a_higher_opus_level_packs_more_speech_in_the_same_budget(prepared):
    default = opus_bytes_per_second(prepared / "train", None, seconds=10)
    small = opus_bytes_per_second(prepared / "train", 0.97, seconds=10)
    assert small < 0.7 * default
    index = [{"length": 16000 * (1 + i % 7)} for i in range(400)]
    assert len(part_ids(index, 2_000_000, 0, audio_bytes_per_second=small)) > \
        len(part_ids(index, 2_000_000, 0, audio_bytes_per_second=default))


def test_pack_then_unpack_rebuilds_a_cache_training_can_read(prepared, tmp_path):
    runner = CliRunner()
    out = tmp_path / "gpu"
    result = runner.invoke(main, ["train", "pack", str(out), "--cache", str(prepared), "--no-wheels"])
    assert result.exit_code == 0, result.output
    assert (out / "run.sh").exists() and "DEVICE:-cuda" in (out / "run.sh").read_text()
    assert (out / "train" / "audio.ogg").exists() and not (out / "wheels").exists()
    # Train teacher states travel as principal components; dev's whole, for validation.
    assert np.load(out / "train" / "teacher-int8.npy").shape[1] == 128
    assert (out / "train" / "teacher-basis.npy").exists() and not (out / "dev" / "teacher-basis.npy").exists()
    result = runner.invoke(main, ["train", "unpack", str(out), "--cache", str(tmp_path / "back")])
    assert result.exit_code == 0, result.output
    for split in ("train", "dev"):
        original = Corpus(prepared / split)
        rebuilt = Corpus(tmp_path / "back" / split)
        by_id = {u["id"]: u for u in original.index}
        assert sorted(u["id"] for u in rebuilt.index) == sorted(by_id)
        for utt in rebuilt.index:
            old = by_id[utt["id"]]
            assert utt["length"] == old["length"] and utt["text"] == old["text"]
            a = original.audio[old["offset"]:old["offset"] + old["length"]].astype(np.float64)
            b = rebuilt.audio[utt["offset"]:utt["offset"] + utt["length"]].astype(np.float64)
            snr = 10 * np.log10((a ** 2).sum() / ((a - b) ** 2).sum())
            assert snr > 8  # Opus, time-aligned (a shifted copy would score below 0 dB)
            ta = original.teacher[old["offset"] // 640:(old["offset"] + old["length"]) // 640]
            tb = rebuilt.teacher[utt["offset"] // 640:(utt["offset"] + utt["length"]) // 640]
            cos = (ta.astype(np.float64) * tb).sum(1) / (
                np.linalg.norm(ta.astype(np.float64), axis=1) * np.linalg.norm(tb.astype(np.float64), axis=1) + 1e-9)
            assert np.all(cos[np.abs(ta).sum(1) > 0] > 0.999)
            assert not tb[np.abs(ta).sum(1) == 0].any()  # no teacher state: still none


def test_pack_refuses_a_non_empty_folder_and_a_missing_part(prepared, tmp_path):
    runner = CliRunner()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    result = runner.invoke(main, ["train", "pack", str(taken), "--cache", str(prepared), "--no-wheels"])
    assert result.exit_code != 0 and "not empty" in result.output
    assert (taken / "keep.txt").read_text() == "mine"
    result = runner.invoke(main, ["train", "pack", str(tmp_path / "p"), "--cache", str(prepared),
                                  "--no-wheels", "--part", "5"])
    assert result.exit_code != 0 and "part 5 does not exist" in result.output
    assert not (tmp_path / "p").exists() and not list(tmp_path.glob(".p-*"))  # nothing half-written
    assert "Traceback" not in result.output


def test_unpack_rejects_audio_that_does_not_match_the_index(prepared, tmp_path):
    runner = CliRunner()
    out = tmp_path / "gpu"
    assert runner.invoke(main, ["train", "pack", str(out), "--cache", str(prepared), "--no-wheels"]).exit_code == 0
    index = json.loads((out / "dev" / "index.json").read_text())
    index[0]["length"] += 16000
    (out / "dev" / "index.json").write_text(json.dumps(index))
    with pytest.raises(PackError, match="the index expects"):
        unpack_split(out / "dev", tmp_path / "back")


def test_run_sh_probe_sizes_the_new_cycle_from_the_logged_step_rate(tmp_path):
    import subprocess
    import sys
    from claricodec.train.pack import DEVICE_SCRIPT
    probe = DEVICE_SCRIPT.split("<<'PY'\n")[1].split("\nPY\n")[0]
    log = tmp_path / "train.log"
    lines = [{"step": 100, "config": {}}] + [{"step": s, "wall": w, "lr": 1e-4}
                                             for s, w in ((150, 10), (200, 15), (250, 20))]
    lines.append({"step": 260, "val_mel": 0.5})  # the closing validation line
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = subprocess.run([sys.executable, "-", str(log), "2"], input=probe, capture_output=True,
                         text=True, check=True)
    # 10 steps/s measured between the first and last loss lines; 2 minutes from step 260.
    assert run.stdout.split() == ["260", str(260 + 1200)]
    assert "10.00 steps/s" in run.stderr


def test_packing_into_a_git_tree_that_does_not_ignore_it_warns(prepared, tmp_path):
    import subprocess
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text("/.gpu*/\n")
    runner = CliRunner()
    for name, warned in ((".gpu", False), ("pack", True)):
        result = runner.invoke(main, ["train", "pack", str(repo / name), "--cache", str(prepared),
                                      "--no-wheels"])
        assert result.exit_code == 0, result.output
        said = " ".join(result.output.split())  # as one line, whatever the console wrapped
        assert ("not ignored" in said) == warned, result.output
