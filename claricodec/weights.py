"""Weights on disk: a directory with manifest.json and safetensors files.

manifest.json is described (and read, without torch) in weights_manifest.py.

Files hold fp16 tensors (small in git); they are computed in fp32. Loading is strict (every
key present, no extra ones) and checks each file's sha256 against the manifest. No pickle.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .codec import Codec, CodecConfig, build_decoder, build_encoder
from .modes import get_mode
from .weights_manifest import (WEIGHTS_ENV, WeightsError, compute_model_id,  # noqa: F401 (re-exported)
                               default_weights_dir, read_manifest, sha256_file)

TEMPERATURE_KEY = "policy.temperature"


def _load_tensors(path: Path, expected_sha256: str | None) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if expected_sha256 is not None and sha256_file(path) != expected_sha256:
        raise WeightsError(f"{path.name} does not match the sha256 in its manifest")
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises several types for a damaged file
        raise WeightsError(f"cannot read {path.name}: {err}") from None
    return {k: v.float() for k, v in tensors.items()}


def _load_strict(module: torch.nn.Module, tensors: dict, what: str) -> None:
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise WeightsError(f"{what} weights do not fit this model: {first}") from None


def load_codec(weights_dir: Path | None = None, encoder: str | Path | None = None,
               device: str = "cpu") -> tuple[Codec, dict]:
    """Build the codec from a weights directory; `encoder` is a manifest name or a file."""
    weights_dir = Path(weights_dir) if weights_dir else default_weights_dir()
    manifest = read_manifest(weights_dir)
    config = _manifest_config(manifest, "manifest")
    mode = get_mode(config.mode)

    dec_entry = manifest["decoder"]
    decoder = build_decoder(config)
    _load_strict(decoder, _load_tensors(weights_dir / dec_entry["file"], dec_entry["sha256"]),
                 "decoder")
    model_id = compute_model_id(dec_entry["sha256"], mode.levels)
    if model_id != manifest.get("model_id"):
        raise WeightsError("manifest model_id does not match its decoder file")

    name = encoder or manifest.get("default_encoder", "stage1")
    if isinstance(name, str) and name in manifest["encoders"]:
        entry = manifest["encoders"][name]
        enc_path, enc_sha = weights_dir / entry["file"], entry["sha256"]
    elif Path(name).suffix == ".safetensors":
        enc_path, enc_sha = Path(name), None  # a user's own file: no manifest hash to check
    else:
        known = ", ".join(sorted(manifest["encoders"]))
        raise WeightsError(f"unknown encoder {name!r} (this manifest has: {known}; or give a .safetensors file)")
    tensors = _load_tensors(enc_path, enc_sha)
    temperature = tensors.pop(TEMPERATURE_KEY, None)
    if temperature is None:
        raise WeightsError(f"{enc_path.name} has no {TEMPERATURE_KEY}")
    enc = build_encoder(config)
    _load_strict(enc, tensors, "encoder")
    config.temperature = float(temperature)
    codec = Codec(config, enc, decoder).to(device).eval()
    codec.silence_code = _silence_code(manifest, mode.codebook_size)
    info = dict(manifest, model_id=model_id, encoder_name=str(name), weights_dir=str(weights_dir))
    return codec, info


def _manifest_config(entry: dict, what: str) -> CodecConfig:
    """The codec_config of a manifest (or of one of its legacy decoders), checked before
    anything is built from it, so a damaged or hand-edited one fails as a WeightsError
    (one line from the CLI) rather than deep inside model construction."""
    try:
        return CodecConfig.from_dict(entry["codec_config"]).check()
    except KeyError:
        raise WeightsError(f"{what} has no codec_config") from None
    except (AttributeError, TypeError, ValueError) as err:  # not a dict, or unknown values
        raise WeightsError(f"{what} codec_config: {err}") from None


def _silence_code(manifest: dict, codebook_size: int) -> int | None:
    code = manifest.get("silence_code")
    if code is not None and (not isinstance(code, int) or not 0 <= code < codebook_size):
        raise WeightsError(f"manifest silence_code {code!r} is not a code of this codec")
    return code


def load_legacy_decoder(weights_dir: Path | None, model_id: str) -> Codec | None:
    """A decode-only codec for .cc files made with earlier shipped weights, or None when
    the manifest keeps no decoder with that model id."""
    weights_dir = Path(weights_dir) if weights_dir else default_weights_dir()
    entry = read_manifest(weights_dir).get("legacy_decoders", {}).get(model_id)
    if entry is None:
        return None
    config = _manifest_config(entry, f"legacy decoder {model_id}")
    if compute_model_id(entry["sha256"], get_mode(config.mode).levels) != model_id:
        raise WeightsError(f"legacy decoder {model_id} does not match its manifest entry")
    decoder = build_decoder(config)
    _load_strict(decoder, _load_tensors(weights_dir / entry["file"], entry["sha256"]),
                 f"legacy decoder {model_id}")
    # Decoding never touches the encoder: an identity stands in for it.
    return Codec(config, torch.nn.Identity(), decoder).eval()


def keep_legacy_decoders(old_dir: Path, out_dir: Path) -> dict:
    """Copy old_dir's decoder (and the earlier ones it kept) into out_dir/legacy/ and list
    them in out_dir's manifest, so files made with those weights still decode."""
    old_dir, out_dir = Path(old_dir), Path(out_dir)
    old = read_manifest(old_dir)
    manifest = read_manifest(out_dir)
    kept = dict(manifest.get("legacy_decoders", {}))
    entries = dict(old.get("legacy_decoders", {}))
    entries[old["model_id"]] = {"file": old["decoder"]["file"], "sha256": old["decoder"]["sha256"],
                                "codec_config": old["codec_config"]}
    (out_dir / "legacy").mkdir(exist_ok=True)
    for model_id, entry in entries.items():
        if model_id == manifest["model_id"]:
            continue  # the same decoder ships as the current one
        source = old_dir / entry["file"]
        target = f"legacy/decoder-{model_id}.safetensors"
        if sha256_file(source) != entry["sha256"]:
            raise WeightsError(f"{source} does not match the sha256 in its manifest")
        (out_dir / target).write_bytes(source.read_bytes())
        kept[model_id] = dict(entry, file=target)
    manifest["legacy_decoders"] = kept
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _fp16(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in module.state_dict().items()}


def save_encoder(codec: Codec, path: Path) -> str:
    tensors = _fp16(codec.encoder)
    # Stored in fp32: the temperature is a scalar and must survive the round trip exactly.
    tensors[TEMPERATURE_KEY] = codec.quantizer.temperature.detach().cpu().float().reshape(())
    save_file(tensors, str(path))
    return sha256_file(path)


def export_weights(codec: Codec, out_dir: Path, training: dict, status: str = "training",
                   encoder_name: str = "stage1") -> dict:
    """Write decoder + one encoder + manifest. Keeps other encoders already listed, unless the
    decoder changed (then their files would decode wrongly, so they are dropped)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dec_path = out_dir / "decoder.safetensors"
    save_file(_fp16(codec.decoder), str(dec_path))
    dec_sha = sha256_file(dec_path)
    enc_file = f"encoder-{encoder_name}.safetensors"
    enc_sha = save_encoder(codec, out_dir / enc_file)
    encoders = {}
    try:
        old = read_manifest(out_dir)
        if old["decoder"]["sha256"] == dec_sha:
            encoders = old["encoders"]
    except WeightsError:
        pass
    encoders[encoder_name] = {"file": enc_file, "sha256": enc_sha,
                              "temperature": float(codec.quantizer.temperature)}
    manifest = {
        "format": 1,
        "status": status,
        "codec_config": codec.config.to_dict(),
        "model_id": compute_model_id(dec_sha, codec.mode.levels),
        "decoder": {"file": dec_path.name, "sha256": dec_sha},
        "encoders": encoders,
        "default_encoder": "rl" if "rl" in encoders else encoder_name,
        "silence_code": codec.quietest_code()[0],
        "training": training,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def add_encoder(codec: Codec, weights_dir: Path, name: str, training: dict) -> dict:
    """Ship another encoder beside the existing ones (stage 2). The decoder file is not
    touched, so the model id, and every .cc file made so far, stay valid."""
    weights_dir = Path(weights_dir)
    manifest = read_manifest(weights_dir)
    file = f"encoder-{name}.safetensors"
    if name in manifest["encoders"] and name == "stage1":
        raise WeightsError("the stage-1 encoder is frozen; give stage 2 another name")
    sha = save_encoder(codec, weights_dir / file)
    manifest["encoders"][name] = {"file": file, "sha256": sha,
                                  "temperature": float(codec.quantizer.temperature),
                                  "training": training}
    if name == "rl":
        manifest["default_encoder"] = "rl"
    (weights_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
