"""The shipped weights must be trained: on real dev speech, their reconstruction (mel L1
through the whole codec, as users run it) must beat a randomly initialised codec of the
same shape by a wide margin. Catches untrained, truncated or mismatched weights."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from claricodec.api import ClariCodec
from claricodec.audio import load_audio
from claricodec.codec import Codec, CodecConfig
from claricodec.train.losses import MultiScaleMelLoss
from conftest import CORPUS


def dev_clips(count: int = 6) -> list[np.ndarray]:
    manifest = CORPUS / "dev" / "manifest.jsonl"
    if not manifest.is_file():
        pytest.skip(f"no dev corpus at {CORPUS} (set CLARICODEC_CORPUS)")
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    picked = [rows[i * len(rows) // count] for i in range(count)]  # spread over sources
    return [load_audio(CORPUS / "dev" / row["path"], 16000) for row in picked]


def reconstruction_loss(codec: Codec, clips) -> float:
    mel = MultiScaleMelLoss()
    losses = []
    with torch.no_grad():
        for clip in clips:
            decoded = codec.decode(codec.encode(clip))[:len(clip)]
            losses.append(mel(torch.from_numpy(decoded)[None], torch.from_numpy(clip)[None]).item())
    return float(np.mean(losses))


def test_shipped_codec_beats_random_initialisation_by_a_wide_margin():
    shipped = ClariCodec()
    if shipped.info.get("status") == "untrained":
        pytest.fail("the shipped weights are the untrained placeholder")
    clips = dev_clips()
    torch.manual_seed(0)
    random_codec = Codec(CodecConfig.from_dict(shipped.info["codec_config"])).eval()
    trained, untrained = reconstruction_loss(shipped.model, clips), reconstruction_loss(random_codec, clips)
    assert trained < 0.6 * untrained, (trained, untrained)


def test_a_pause_between_utterances_comes_out_silent():
    """A long pause of a recording is sent as the decoder's silence code (the manifest's,
    which must be the code it renders quietest): it used to come out as a noise floor
    nearly as loud as the speech (-35 dBFS for a -70 dBFS room)."""
    from conftest import DATA
    import soundfile as sf
    shipped = ClariCodec()
    assert shipped.model.silence_code == shipped.model.quietest_code()[0]
    speech, rate = sf.read(DATA / "hello.wav", dtype="float32")
    room = (np.random.default_rng(0).standard_normal(15 * rate) * 10 ** (-70 / 20)).astype(np.float32)
    decoded, _ = shipped.decode(shipped.encode(np.concatenate([speech, room, speech]), rate))
    def level(audio):
        return 10 * np.log10(np.mean(audio.astype(np.float64) ** 2) + 1e-20)

    assert level(decoded[len(speech) + 2 * rate:len(speech) + 13 * rate]) < -80
    alone, _ = shipped.decode(shipped.encode(speech, rate))
    for said in (decoded[:len(speech)], decoded[-len(speech):]):  # the speech either side still there
        assert abs(level(said) - level(alone)) < 3
