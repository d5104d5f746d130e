import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from claricodec.weights import WeightsError, load_codec, sha256_file


def copy(tiny_weights, tmp_path):
    out = tmp_path / "w"
    shutil.copytree(tiny_weights, out)
    return out


def test_files_are_fp16_and_hashed(tiny_weights):
    manifest = json.loads((tiny_weights / "manifest.json").read_text())
    dec = tiny_weights / manifest["decoder"]["file"]
    assert sha256_file(dec) == manifest["decoder"]["sha256"]
    assert {str(t.dtype) for t in load_file(str(dec)).values()} == {"torch.float16"}


def test_tampered_file_is_refused(tiny_weights, tmp_path):
    w = copy(tiny_weights, tmp_path)
    path = w / "decoder.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        load_codec(w)


def test_missing_key_is_refused_strictly(tiny_weights, tmp_path):
    w = copy(tiny_weights, tmp_path)
    manifest = json.loads((w / "manifest.json").read_text())
    enc = w / manifest["encoders"]["stage1"]["file"]
    tensors = load_file(str(enc))
    tensors.pop(sorted(k for k in tensors if k.startswith("stage25"))[0])
    save_file(tensors, str(enc))
    manifest["encoders"]["stage1"]["sha256"] = sha256_file(enc)
    (w / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match="do not fit"):
        load_codec(w)


def test_unknown_encoder_name_and_missing_manifest(tiny_weights, tmp_path):
    with pytest.raises(WeightsError, match="unknown encoder"):
        load_codec(tiny_weights, encoder="nope")
    with pytest.raises(WeightsError, match="no manifest"):
        load_codec(tmp_path)


def test_encoder_file_by_path(tiny_weights):
    codec, info = load_codec(tiny_weights, encoder=str(tiny_weights / "encoder-stage1.safetensors"))
    assert info["model_id"] == json.loads((tiny_weights / "manifest.json").read_text())["model_id"]


@pytest.mark.parametrize("edit, message", [
    ({"front_window": "trimm"}, "unknown front window 'trimm'"),
    ({"front": "wav2vec"}, "unknown encoder front 'wav2vec'"),
    ({"mode": 9}, "unknown mode 9"),
])
def test_a_hand_edited_codec_config_is_refused_as_bad_weights(tiny_weights, tmp_path, edit, message):
    w = copy(tiny_weights, tmp_path)
    manifest = json.loads((w / "manifest.json").read_text())
    manifest["codec_config"].update(edit)
    (w / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match=f"manifest codec_config: {message}"):
        load_codec(w)
    manifest["codec_config"] = ["not", "a", "table"]
    (w / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match="manifest codec_config"):
        load_codec(w)
