"""The command line through click's runner: files, pipes, directories, bad input."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from claricodec.cli.main import main

DATA = Path(__file__).parent / "data"


@pytest.fixture
def run(weights_env):
    def invoke(*args, input=None):
        return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)
    return invoke


def no_partial_files(folder: Path) -> bool:
    return not any(p.name.endswith(".partial") for p in folder.rglob("*"))


def test_help_explains_itself():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for word in ("encode", "decode", "info", "200 bit/s"):
        assert word in result.output
    result = CliRunner().invoke(main, ["encode", "--help"])
    assert "stdin" in result.output and "--crc" in result.output


def test_encode_info_decode_files(run, tmp_path):
    cc, wav = tmp_path / "a.cc", tmp_path / "a.wav"
    assert run("encode", DATA / "hello.wav", cc).exit_code == 0
    info = run("info", cc)
    assert info.exit_code == 0
    assert "mode 1" in info.output and "200 bit/s" in info.output and "matches these weights" in info.output
    assert run("decode", cc, wav).exit_code == 0
    import soundfile as sf
    audio, rate = sf.read(wav)
    assert rate == 16000 and len(audio) == sf.info(DATA / "hello.wav").frames
    assert run("decode", "--rate", 8000, cc, wav).exit_code == 0
    assert sf.info(wav).samplerate == 8000


def test_info_starts_without_torch():
    """`info` reads a header and the manifest only: in a shell loop over many files,
    importing torch (over a second) would be most of its time."""
    import subprocess
    import sys
    probe = ("import sys; from click.testing import CliRunner; from claricodec.cli.main import main; "
             "result = CliRunner().invoke(main, ['info', sys.argv[1]]); print(result.output); "
             "print('torch imported:', 'torch' in sys.modules)")
    golden = Path(__file__).parent / "golden" / "hello.cc"
    done = subprocess.run([sys.executable, "-c", probe, str(golden)], capture_output=True, text=True, timeout=60)
    assert "matches these weights" in done.stdout, done.stdout + done.stderr
    assert "torch imported: False" in done.stdout


def test_pipes_stdin_to_stdout(run, tmp_path):
    wav_bytes = (DATA / "hello.wav").read_bytes()
    enc = run("encode", "-", "-", input=wav_bytes)
    assert enc.exit_code == 0
    cc = enc.stdout_bytes
    assert cc[:2] == b"CC"
    # From a pipe the length is unknown when the header goes out (it streams), so the
    # header says 0 samples; the codes are exactly those of the file.
    from claricodec.bitstream import read_stream
    piped, whole = read_stream(cc), read_stream(run("encode", DATA / "hello.wav", "-").stdout_bytes)
    assert piped.header.num_samples == 0 and whole.header.num_samples > 0
    assert piped.indices == whole.indices
    dec = run("decode", "-", "-", input=cc)
    assert dec.exit_code == 0 and dec.stdout_bytes[:4] == b"RIFF"


def test_type_detected_by_content_not_extension(run, tmp_path):
    odd = tmp_path / "speech.data"
    shutil.copy(DATA / "hello.wav", odd)
    assert run("encode", odd, tmp_path / "x.bin").exit_code == 0
    assert run("decode", tmp_path / "x.bin", tmp_path / "y.out").exit_code == 0


def test_directory_batch_mirrors_tree_and_reports_bad_files(run, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copy(DATA / "hello.wav", src / "one.wav")
    shutil.copy(DATA / "hello.wav", src / "sub" / "two.flac.wav")
    (src / "broken.wav").write_text("not audio")  # named as audio: a failed input
    (src / "notes.txt").write_text("not audio")  # a corpus folder's README or manifest: skipped
    (src / "manifest.jsonl").write_text("{}")
    out = tmp_path / "out"
    result = run("encode", src, out)
    assert result.exit_code == 1
    assert "broken.wav" in result.output and "1 of 3 files failed" in result.output
    assert "2 files not audio by name (.jsonl, .txt), skipped" in result.output
    assert (out / "one.cc").is_file() and (out / "sub" / "two.flac.cc").is_file()
    assert not (out / "broken.cc").exists() and not (out / "notes.cc").exists() and no_partial_files(out)
    (src / "broken.wav").unlink()
    again = run("encode", src, out)  # existing outputs are skipped, not redone
    assert again.exit_code == 0 and "exists, skipped" in again.output
    decoded = tmp_path / "decoded"
    assert run("decode", out, decoded).exit_code == 0
    assert (decoded / "one.wav").is_file() and (decoded / "sub" / "two.flac.wav").is_file()
    assert run("decode", "--format", "flac", out, tmp_path / "flac").exit_code == 0
    import soundfile as sf
    assert sf.info(tmp_path / "flac" / "sub" / "two.flac.flac").format == "FLAC"
    result = run("decode", "--format", "flac", out / "one.cc", tmp_path / "one.wav")
    assert result.exit_code != 0 and "name picks its format" in result.output
    assert not (tmp_path / "one.wav").exists()


def test_output_inside_input_directory_is_refused(run, tmp_path):
    (tmp_path / "in").mkdir()
    shutil.copy(DATA / "hello.wav", tmp_path / "in" / "a.wav")
    result = run("encode", tmp_path / "in", tmp_path / "in" / "out")
    assert result.exit_code != 0 and "must not be inside" in result.output


def corrupt_cases(good: bytes) -> dict[str, bytes]:
    header_len = 12
    bad_version = bytearray(good)
    bad_version[2] = (2 << 4) | 1
    bad_mode = bytearray(good)
    bad_mode[2] = (1 << 4) | 9
    bad_crc = bytearray(good)
    bad_crc[header_len - 1] ^= 0xFF
    return {
        "bad magic": b"XX" + good[2:],
        "unknown version": bytes(bad_version),
        "unknown mode": bytes(bad_mode),
        "header crc": bytes(bad_crc),
        "truncated payload": good[:-3],
        "truncated header": good[:5],
        "empty": b"",
    }


@pytest.mark.parametrize("case", list(corrupt_cases(b"\0" * 40)))
def test_corrupt_cc_gives_one_line_error_and_no_output(run, tmp_path, case):
    cc = tmp_path / "good.cc"
    run("encode", DATA / "hello.wav", cc)
    bad = tmp_path / "bad.cc"
    bad.write_bytes(corrupt_cases(cc.read_bytes())[case])
    out = tmp_path / "out.wav"
    result = run("decode", bad, out)
    assert result.exit_code == 1
    lines = [l for l in result.output.splitlines() if l.startswith("claricodec: error")]
    assert len(lines) == 1 and "bad.cc" in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists() and no_partial_files(tmp_path)


def test_block_crc_mismatch_refused_unless_ignored(run, tmp_path):
    cc = tmp_path / "a.cc"
    run("encode", "--crc", DATA / "hello.wav", cc)
    data = bytearray(cc.read_bytes())
    data[12 + 3] ^= 0x10  # a payload bit in the first second
    cc.write_bytes(bytes(data))
    result = run("decode", cc, tmp_path / "a.wav")
    assert result.exit_code == 1 and "CRC mismatch" in result.output
    assert not (tmp_path / "a.wav").exists()
    assert run("decode", "--ignore-crc", cc, tmp_path / "a.wav").exit_code == 0
    assert "frames in failed blocks" in run("info", cc).output


def test_bad_audio_inputs(run, tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("hello")
    import numpy as np
    import soundfile as sf
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    for name in ("empty.wav", "text.wav", "zero.wav", "missing.wav"):
        out = tmp_path / (name + ".cc")
        result = run("encode", tmp_path / name, out)
        assert result.exit_code == 1, name
        assert name in result.output and "Traceback" not in result.output
        assert not out.exists()


def test_decoding_a_wav_is_a_clear_error(run, tmp_path):
    result = run("decode", DATA / "hello.wav", tmp_path / "x.wav")
    assert result.exit_code == 1 and "not a ClariCodec .cc stream" in result.output


def test_raw_mode_round_trip(run, tmp_path):
    raw = tmp_path / "a.raw"
    assert run("encode", "--raw", DATA / "hello.wav", raw).exit_code == 0
    import soundfile as sf
    assert raw.stat().st_size == -(-sf.info(DATA / "hello.wav").frames // 640)
    assert run("decode", "--raw", raw, tmp_path / "a.wav").exit_code == 0
    assert run("encode", "--raw", "--crc", DATA / "hello.wav", raw).exit_code != 0


def test_mode2_same_audio_fewer_bits_files_pipes_and_raw(run, tmp_path):
    import soundfile as sf
    from claricodec.bitstream import read_stream
    one, two = tmp_path / "one.cc", tmp_path / "two.cc"
    assert run("encode", DATA / "hello.wav", one).exit_code == 0
    assert run("encode", "--mode", 2, DATA / "hello.wav", two).exit_code == 0
    assert read_stream(two.read_bytes()).indices == read_stream(one.read_bytes()).indices
    info = run("info", two)
    assert info.exit_code == 0 and "mode 2" in info.output and "entropy-coded" in info.output
    for cc in (one, two):
        assert run("decode", cc, cc.with_suffix(".wav")).exit_code == 0
    assert (sf.read(one.with_suffix(".wav"))[0] == sf.read(two.with_suffix(".wav"))[0]).all()
    piped = run("encode", "--mode", 2, "-", "-", input=(DATA / "hello.wav").read_bytes())
    assert piped.exit_code == 0 and read_stream(piped.stdout_bytes).header.num_samples == 0
    assert read_stream(piped.stdout_bytes).indices == read_stream(one.read_bytes()).indices
    raw = tmp_path / "two.raw"
    assert run("encode", "--raw", "--mode", 2, DATA / "hello.wav", raw).exit_code == 0
    assert run("decode", "--raw", "--mode", 2, raw, tmp_path / "raw.wav").exit_code == 0
    decoded = sf.read(tmp_path / "raw.wav")[0]  # no header: no length, whole frames
    assert (decoded[:len(sf.read(one.with_suffix(".wav"))[0])] == sf.read(one.with_suffix(".wav"))[0]).all()


@pytest.mark.parametrize("args, message", [
    (("encode", "--mode", 2, "--crc"), "--crc needs --mode 1"),
    (("decode", "--mode", 2), "--mode only matters with --raw"),
])
def test_mode2_option_misuse_is_one_line(run, tmp_path, args, message):
    source = DATA / "hello.wav"
    if args[0] == "decode":
        source = tmp_path / "a.cc"
        run("encode", DATA / "hello.wav", source)
    out = tmp_path / "out"
    result = run(*args, source, out)
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_corrupt_mode2_file_is_one_line_and_no_output(run, tmp_path):
    cc = tmp_path / "a.cc"
    run("encode", "--mode", 2, DATA / "hello.wav", cc)
    good = cc.read_bytes()
    for name, bad in (("truncated", good[:-2]), ("trailing", good + b"\x00\x01")):
        path = tmp_path / f"{name}.cc"
        path.write_bytes(bad)
        result = run("decode", path, tmp_path / f"{name}.wav")
        assert result.exit_code == 1 and "Traceback" not in result.output, name
        assert sum(l.startswith("claricodec: error") for l in result.output.splitlines()) == 1
        assert not (tmp_path / f"{name}.wav").exists() and no_partial_files(tmp_path)


def test_a_damaged_manifest_is_one_line_and_no_output(weights_env, tmp_path, monkeypatch):
    weights = tmp_path / "w"
    shutil.copytree(weights_env, weights)
    manifest = json.loads((weights / "manifest.json").read_text())
    manifest["codec_config"]["front_window"] = "ful"
    (weights / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("CLARICODEC_WEIGHTS", str(weights))
    out = tmp_path / "out.cc"
    result = CliRunner().invoke(main, ["encode", str(DATA / "hello.wav"), str(out)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "unknown front window 'ful'" in result.output and "Traceback" not in result.output
    assert not out.exists() and no_partial_files(tmp_path)


def test_decode_writes_flac_or_ogg_by_the_outputs_suffix(run, tmp_path):
    import numpy as np
    import soundfile as sf
    cc = tmp_path / "a.cc"
    assert run("encode", DATA / "hello.wav", cc).exit_code == 0
    assert run("decode", cc, tmp_path / "a.wav").exit_code == 0
    wav, rate = sf.read(tmp_path / "a.wav")
    assert run("decode", cc, tmp_path / "a.FLAC").exit_code == 0
    assert sf.info(tmp_path / "a.FLAC").format == "FLAC"
    flac, _ = sf.read(tmp_path / "a.FLAC")
    assert np.array_equal(flac, wav)  # both 16-bit PCM of the same samples
    assert run("decode", "--rate", 8000, cc, tmp_path / "a.ogg").exit_code == 0
    info = sf.info(tmp_path / "a.ogg")
    assert (info.format, info.subtype, info.samplerate) == ("OGG", "VORBIS", 8000)
    assert info.frames == round(len(wav) * 8000 / rate)
    assert run("decode", cc, tmp_path / "a.out").exit_code == 0  # any other name: WAV
    assert sf.info(tmp_path / "a.out").format == "WAV"
    assert no_partial_files(tmp_path)


def test_decode_erasures_conceal_the_frames_named_and_refuse_bad_lists(run, tmp_path):
    import numpy as np
    import soundfile as sf
    cc = tmp_path / "a.cc"
    assert run("encode", DATA / "hello.wav", cc).exit_code == 0
    assert run("decode", cc, tmp_path / "plain.wav").exit_code == 0
    assert run("decode", "--erasures", "20-29, 40", cc, tmp_path / "lost.wav").exit_code == 0
    plain, _ = sf.read(tmp_path / "plain.wav")
    lost, _ = sf.read(tmp_path / "lost.wav")
    assert len(lost) == len(plain) and not np.array_equal(lost, plain)
    assert np.array_equal(lost[:640 * 15], plain[:640 * 15])  # before the loss: untouched
    for bad, message in (("29-20", "ends before it starts"), ("x", "not a frame number"),
                         ("-3", "not a frame number")):
        result = run("decode", "--erasures", bad, cc, tmp_path / "bad.wav")
        assert result.exit_code != 0 and message in result.output, (bad, result.output)
        assert not (tmp_path / "bad.wav").exists()
    # Past the end: nothing to conceal, said so; the audio is the plain decode.
    frames = len(plain) // 640 + 1
    result = run("decode", "--erasures", f"{frames - 1}-{frames + 9}", cc, tmp_path / "past.wav")
    assert result.exit_code == 0 and f"10 --erasures frames (from {frames})" in result.output, result.output
    assert "past its end" in result.output
    result = run("decode", "--erasures", "0", cc, tmp_path / "first.wav")
    assert result.exit_code == 0 and "past its end" not in result.output
