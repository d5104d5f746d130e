"""New shipped weights keep the decoders of earlier ones, so .cc files made before an
upgrade still decode (weights.keep_legacy_decoders, manifest "legacy_decoders")."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from claricodec.api import ClariCodec
from claricodec.bitstream import FormatError
from claricodec.cli.main import main
from claricodec.weights import WeightsError, keep_legacy_decoders, read_manifest
from conftest import make_weights


@pytest.fixture(scope="module")
def generations(tmp_path_factory):
    """Three generations of weights, each new one keeping the decoders before it."""
    root = tmp_path_factory.mktemp("generations")
    old, mid, new = (make_weights(root / name, seed) for seed, name in enumerate(("old", "mid", "new")))
    keep_legacy_decoders(old, mid)
    keep_legacy_decoders(mid, new)
    return old, mid, new


def test_files_from_earlier_weights_decode_as_they_did(generations, speech):
    old, mid, new = generations
    latest = ClariCodec(new)
    for earlier in (old, mid):  # mid's decoder directly, old's through mid's manifest
        data = ClariCodec(earlier).encode(*speech)
        expected, _ = ClariCodec(earlier).decode(data)
        audio, rate = latest.decode(data)
        assert rate == 16000
        np.testing.assert_array_equal(audio, expected)
    assert sorted(read_manifest(new)["legacy_decoders"]) == sorted(
        read_manifest(d)["model_id"] for d in (old, mid))


def test_unknown_model_id_is_still_refused(generations, tmp_path, speech):
    stranger = make_weights(tmp_path / "stranger", seed=7)
    data = ClariCodec(stranger).encode(*speech)
    with pytest.raises(FormatError, match="other decoder weights"):
        ClariCodec(generations[2]).decode(data)


def test_tampered_legacy_decoder_is_refused(generations, tmp_path, speech):
    import shutil
    old, _, new = generations
    copy = tmp_path / "copy"
    shutil.copytree(new, copy)
    entry = read_manifest(copy)["legacy_decoders"][read_manifest(old)["model_id"]]
    path = copy / entry["file"]
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(WeightsError, match="sha256"):
        ClariCodec(copy).decode(ClariCodec(old).encode(*speech))


def test_cli_info_and_decode_of_an_earlier_file(generations, tmp_path, speech):
    import soundfile as sf
    old, _, new = generations
    wav, cc, out = tmp_path / "in.wav", tmp_path / "in.cc", tmp_path / "out.wav"
    sf.write(wav, *speech)
    runner = CliRunner()
    assert runner.invoke(main, ["encode", "--weights", str(old), str(wav), str(cc)]).exit_code == 0
    result = runner.invoke(main, ["info", "--weights", str(new), str(cc)])
    assert result.exit_code == 0, result.output
    assert "earlier weights" in result.output and "still decode" in result.output
    result = runner.invoke(main, ["decode", "--weights", str(new), str(cc), str(out)])
    assert result.exit_code == 0, result.output
    assert sf.info(out).frames == len(speech[0])


def test_manifest_lists_each_kept_decoder_once_with_its_config(generations):
    old, mid, new = generations
    entries = read_manifest(new)["legacy_decoders"]
    assert all(e["file"].startswith("legacy/") and "codec_config" in e for e in entries.values())
    assert json.loads((new / "manifest.json").read_text())["model_id"] not in entries
