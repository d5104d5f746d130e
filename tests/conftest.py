"""Shared fixtures: a tiny seeded codec for plumbing tests, and a short speech clip.

The tiny model is random (quality is measured elsewhere, with the shipped weights); it
only has to be deterministic and exercise every code path quickly.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from claricodec.codec import Codec, CodecConfig
from claricodec.weights import export_weights

DATA = Path(__file__).parent / "data"
BENCH = Path(__file__).resolve().parents[1] / "bench"
# The real speech corpus (never in git): ../shared/corpus beside the checkout, as in CI.
CORPUS = Path(os.environ.get("CLARICODEC_CORPUS",
                             Path(__file__).resolve().parents[2] / "shared" / "corpus"))
TINY = CodecConfig(encoder_dim=32, encoder_depths=(1, 1, 1), decoder_dim=32, decoder_depths=(1, 1),
                   n_mels=40)


def make_weights(directory: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    codec = Codec(CodecConfig(**TINY.to_dict()))
    # A random encoder puts nearly every frame on one code; spread the output so the
    # codes actually vary with the audio (plumbing tests want more than one code).
    with torch.no_grad():
        codec.encoder.out[1].weight.mul_(40.0)
    export_weights(codec, directory, {"steps": 0, "note": "tiny seeded test model"}, status="untrained")
    return directory


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    return make_weights(tmp_path_factory.mktemp("tiny_weights"))


@pytest.fixture(scope="session")
def speech() -> tuple[np.ndarray, int]:
    audio, rate = sf.read(DATA / "hello.wav", dtype="float32")
    return audio, rate


@pytest.fixture(scope="session")
def tiny_codec(tiny_weights):
    from claricodec.api import ClariCodec
    return ClariCodec(tiny_weights)


@pytest.fixture
def weights_env(tiny_weights, monkeypatch):
    """Make the CLI and default API use the tiny weights."""
    monkeypatch.setenv("CLARICODEC_WEIGHTS", str(tiny_weights))
    return tiny_weights


@pytest.fixture(scope="session")
def weights_factory():
    """make_weights(directory, seed): other tiny weights, e.g. a different decoder."""
    return make_weights


def load_bench(name: str):
    """A bench/ script (not a package) imported as a module, for testing its functions.
    bench/ goes on sys.path, as it is when a script runs, for the scripts' imports of each other."""
    if str(BENCH) not in sys.path:
        sys.path.append(str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
