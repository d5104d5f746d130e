"""The weights directory's manifest: where it is, what it lists, the hashes and the model id.

No torch here, so `claricodec info` (which only names the model id's weights) starts fast;
`claricodec.weights` loads the tensors the manifest lists.

manifest.json:
    format          1
    status          "untrained" | "training" (an early checkpoint) | "trained"
    codec_config    CodecConfig as a dict
    model_id        8 hex digits: sha256 of the decoder file's sha256 and the quantiser
                    levels; written into every .cc header, so a file made for other decoder
                    weights is refused. Stage 2 replaces encoders only, so it never changes.
    decoder         {"file", "sha256"}
    encoders        {name: {"file", "sha256", ...}}; "stage1" and later "rl"
    default_encoder name of the encoder `encode` uses unless told otherwise
    silence_code    optional: the code whose run the decoder renders quietest
                    (Codec.quietest_code); silent phrases are sent as it (codec.py)
    training        free-form provenance (steps, wall time, data hash, commit)
    legacy_decoders optional {model_id: {"file", "sha256", "codec_config"}}: decoders of
                    earlier shipped weights, kept so .cc files made with them still decode
"""
from __future__ import annotations

import hashlib
import json
import os
from importlib import resources
from pathlib import Path

WEIGHTS_ENV = "CLARICODEC_WEIGHTS"


class WeightsError(ValueError):
    """Weights missing, corrupt or not matching their manifest. Message is one line."""


def default_weights_dir() -> Path:
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env)
    return Path(str(resources.files("claricodec.shipped")))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def compute_model_id(decoder_sha256: str, levels: tuple[int, ...]) -> str:
    text = json.dumps({"decoder": decoder_sha256, "levels": list(levels)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def read_manifest(weights_dir: Path) -> dict:
    path = Path(weights_dir) / "manifest.json"
    if not path.is_file():
        raise WeightsError(f"no manifest.json in weights directory {weights_dir}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise WeightsError(f"{path} is not valid JSON ({err.msg})") from None
    if manifest.get("format") != 1:
        raise WeightsError(f"{path}: unsupported manifest format {manifest.get('format')!r}")
    return manifest
