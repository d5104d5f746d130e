"""Bad, odd and extreme audio input: every case gives a sensible result or a one-line error.

Through the CLI (click's runner, tiny seeded weights): a success writes a .cc file whose
frame count is ceil(duration at 16 kHz / 40 ms), give or take one frame (resampling
rounds); a failure exits 1 with exactly one `claricodec: error:` line naming the input,
no traceback and no output file (not even a *.partial). The library API is checked for
the array-shaped mistakes a caller can make.

docs/robustness.md is generated from these same cases:

    python tests/test_bad_audio.py > /tmp/table.md
"""
from __future__ import annotations

import math
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf
import soxr

from claricodec.audio import AudioError
from claricodec.bitstream import read_stream
from claricodec.stream_io import AUDIO_SUFFIXES

DATA = Path(__file__).parent / "data"
RATE = 16000
HOP_S = 0.04  # one frame: 40 ms


# --- the cases ----------------------------------------------------------------------------

UNREADABLE = "cannot read audio"
NAN = "audio contains NaN or infinite samples"


@dataclass
class Case:
    name: str
    what: str  # for the table in docs/robustness.md
    make: Callable[[Path], Path]  # writes the input file into a folder, returns its path
    # Expected error, a substring of it (the exact texts, which name libsndfile's reason,
    # are in docs/robustness.md); None = must succeed.
    error: str | None = None
    seconds: Callable[[Path], float] | None = None  # expected duration; default: soundfile's


def _hello() -> tuple[np.ndarray, int]:
    audio, rate = sf.read(DATA / "hello.wav", dtype="float32")
    return audio, rate


def _wav(name: str, audio: np.ndarray | Callable[[], np.ndarray], rate: int = RATE, **kw):
    def make(folder: Path) -> Path:
        path = folder / name
        sf.write(path, audio() if callable(audio) else audio, rate, **kw)
        return path
    return make


def _bytes(name: str, data: bytes | Callable[[], bytes]):
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data() if callable(data) else data)
        return path
    return make


def _speech() -> np.ndarray:
    return _hello()[0]


def _with(value: float) -> Callable[[], np.ndarray]:
    def make() -> np.ndarray:
        audio = _speech().copy()
        audio[1000] = value
        return audio
    return make


def _resampled(rate: int) -> Callable[[], np.ndarray]:
    return lambda: soxr.resample(_speech(), RATE, rate, quality="HQ").astype(np.float32)


def _noise() -> np.ndarray:
    return np.random.default_rng(1).uniform(-1.0, 1.0, 2 * RATE).astype(np.float32)


def _clipped() -> np.ndarray:
    return np.clip(_speech() * 20.0, -1.0, 1.0)


def _truncated_wav() -> bytes:
    """A 16-bit WAV cut in half: the header still claims every sample."""
    import io
    buf = io.BytesIO()
    sf.write(buf, _speech(), RATE, subtype="PCM_16", format="WAV")
    data = buf.getvalue()
    return data[:len(data) // 2]


def _truncated_wav_seconds(path: Path) -> float:
    data = path.read_bytes()
    start = data.index(b"data") + 8
    return (len(data) - start) // 2 / RATE


def _truncated(fmt: str, fraction: float) -> Callable[[], bytes]:
    def make() -> bytes:
        import io
        buf = io.BytesIO()
        sf.write(buf, _speech(), RATE, format=fmt, **({"subtype": "VORBIS"} if fmt == "OGG" else {}))
        data = buf.getvalue()
        return data[:int(len(data) * fraction)]
    return make


def _random_bytes() -> bytes:
    return np.random.default_rng(2).bytes(5000)


CASES = [
    Case("empty file", "0-byte file", _bytes("empty.wav", b""), error="cannot read audio"),
    Case("zero samples", "valid 16-bit WAV header, 0 samples", _wav("zero.wav", np.zeros(0, np.float32)),
         error="audio is empty"),
    Case("10 samples", "WAV of 10 samples (< one 640-sample frame)",
         _wav("ten.wav", np.linspace(-0.5, 0.5, 10, dtype=np.float32))),
    Case("1 sample", "WAV of 1 sample", _wav("one.wav", np.array([0.25], np.float32))),
    Case("silence", "2 s of digital silence", _wav("silence.wav", np.zeros(2 * RATE, np.float32))),
    Case("white noise", "2 s full-scale uniform white noise, 16-bit", _wav("noise.wav", _noise)),
    Case("hard clipping", "speech x20, clipped to +-1, 16-bit", _wav("clipped.wav", _clipped)),
    Case("float over full scale", "FLOAT WAV, speech x1000 (peaks far above 1.0)",
         _wav("loud.wav", lambda: _speech() * 1000, subtype="FLOAT")),
    Case("NaN", "FLOAT WAV, one NaN sample", _wav("nan.wav", _with(np.nan), subtype="FLOAT"),
         error=NAN),
    Case("+inf", "FLOAT WAV, one +inf sample", _wav("inf.wav", _with(np.inf), subtype="FLOAT"),
         error=NAN),
    Case("-inf in DOUBLE", "DOUBLE WAV, one -inf sample", _wav("ninf.wav", _with(-np.inf), subtype="DOUBLE"),
         error=NAN),
    *[Case(f"WAV {subtype}", f"speech, WAV {subtype}", _wav(f"{subtype.lower()}.wav", _speech, subtype=subtype))
      for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")],
    Case("FLAC", "speech, FLAC 16-bit", _wav("speech.flac", _speech, format="FLAC")),
    Case("OGG/Vorbis", "speech, Ogg Vorbis", _wav("speech.ogg", _speech, format="OGG", subtype="VORBIS")),
    *[Case(f"{rate} Hz", f"speech resampled to {rate} Hz, 16-bit WAV",
           _wav(f"rate{rate}.wav", _resampled(rate), rate))
      for rate in (8000, 11025, 22050, 44100, 48000, 96000)],
    *[Case(f"{n} channel{'s' if n > 1 else ''}", f"speech in {n} channel(s), 16-bit WAV",
           _wav(f"ch{n}.wav", lambda n=n: np.stack([_speech() * (0.5 + 0.5 * c / n) for c in range(n)], 1)))
      for n in range(1, 9)],
    Case("text file", "a text file named .wav", _bytes("text.wav", b"hello world\n" * 20),
         error=UNREADABLE),
    Case("random bytes", "5000 random bytes", _bytes("random.bin", _random_bytes),
         error=UNREADABLE),
    Case("RIFF + random", "'RIFF' then 5000 random bytes", _bytes("riff.wav", lambda: b"RIFF" + _random_bytes()),
         error=UNREADABLE),
    Case("truncated WAV", "16-bit WAV cut in half (header claims twice the data)",
         _bytes("truncated.wav", _truncated_wav), seconds=_truncated_wav_seconds),
    Case("truncated WAV header", "first 30 bytes of a WAV (no data chunk)",
         _bytes("header.wav", lambda: _truncated_wav()[:30]),
         error=UNREADABLE),
    Case("truncated FLAC", "FLAC cut in half", _bytes("truncated.flac", _truncated("FLAC", 0.5)),
         error=UNREADABLE),
    Case("truncated OGG", "Ogg Vorbis cut in half (decodes up to the cut)",
         _bytes("truncated.ogg", _truncated("OGG", 0.5))),
    Case("truncated OGG header", "first 10 % of an Ogg Vorbis file",
         _bytes("header.ogg", _truncated("OGG", 0.1)),
         error=UNREADABLE),
]
BY_NAME = {case.name: case for case in CASES}


def expected_frames(case: Case, path: Path) -> float:
    if case.seconds is not None:
        seconds = case.seconds(path)
    else:
        info = sf.info(path)
        seconds = info.frames / info.samplerate
    return seconds / HOP_S  # frames, before rounding up


# --- running the CLI --------------------------------------------------------------------

@dataclass
class Outcome:
    exit_code: int
    output: str
    exception: BaseException | None
    written: bytes | None


def encode_cli(source: str | Path, target: Path, stdin: bytes | None = None) -> Outcome:
    from click.testing import CliRunner

    from claricodec.cli.main import main
    result = CliRunner().invoke(main, ["encode", str(source), str(target)], input=stdin)
    written = target.read_bytes() if target.is_file() else None
    return Outcome(result.exit_code, result.output, result.exception, written)


def squash(text: str) -> str:
    """Without any whitespace: rich's line wrapping may drop the space it breaks at."""
    return "".join(text.split())


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("claricodec: error")]


def no_partial_files(folder: Path) -> bool:
    return not any(p.name.endswith(".partial") for p in folder.rglob("*"))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny model, many short calls: one thread is faster, and kinder to a busy machine."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad_audio")
    return {case.name: case.make(folder) for case in CASES}


@pytest.mark.parametrize("via", ["file", "stdin"])
@pytest.mark.parametrize("name", list(BY_NAME))
def test_cli_encode(name, via, inputs, weights_env, tiny_codec, tmp_path):
    """A file argument goes through soundfile; stdin through the streaming WAV parser
    (RIFF input) or soundfile on the bytes (anything else)."""
    case, path = BY_NAME[name], inputs[name]
    out = tmp_path / "out" / "x.cc"
    if via == "file":
        result, label = encode_cli(path, out), str(path)
    else:
        result, label = encode_cli("-", out, stdin=path.read_bytes()), "stdin"
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if case.error is None:
        assert result.exit_code == 0, result.output
        assert not error_lines(result.output)
        stream = read_stream(result.written)
        frames = len(stream.indices)
        expected = expected_frames(case, path)
        assert abs(frames - math.ceil(expected)) <= 1, (frames, expected)
        assert frames >= 1
        # ... and it decodes to finite audio of the header's length (a pipe: whole frames)
        audio, rate = tiny_codec.decode(result.written)
        assert rate == RATE and len(audio) == (stream.header.num_samples or frames * 640)
        assert np.all(np.isfinite(audio))
    else:
        assert result.exit_code == 1, result.output
        lines = error_lines(result.output)
        assert len(lines) == 1, result.output
        assert f"claricodec: error: {label}: " in lines[0] and case.error in lines[0], lines[0]
        assert result.written is None and not out.exists()
        assert no_partial_files(tmp_path)


@pytest.mark.parametrize("name", ["empty file", "text file", "random bytes"])
def test_stdin_errors_show_no_python_reprs(name, inputs, weights_env, tmp_path):
    result = encode_cli("-", tmp_path / "x.cc", stdin=inputs[name].read_bytes())
    assert result.exit_code == 1 and "object at 0x" not in result.output, result.output


def test_failed_encode_keeps_an_existing_output(inputs, weights_env, tmp_path):
    out = tmp_path / "x.cc"
    out.write_bytes(b"previous")
    result = encode_cli(inputs["text file"], out)
    assert result.exit_code == 1 and out.read_bytes() == b"previous" and no_partial_files(tmp_path)


# --- directories ------------------------------------------------------------------------

def test_directory_with_bad_files(inputs, weights_env, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    good = ["WAV PCM_16", "FLAC", "48000 Hz"]
    bad = ["empty file", "text file", "random bytes", "NaN", "zero samples"]
    # Named as audio, whatever they hold: a directory encode takes only audio names.
    suffix = {name: inputs[name].suffix if inputs[name].suffix in AUDIO_SUFFIXES else ".wav"
              for name in good + bad}
    for i, name in enumerate(good + bad):
        target = src / ("sub" if i % 2 else "") / f"{i:02d}{suffix[name]}"
        target.write_bytes(inputs[name].read_bytes())
    (src / "README").write_text("not audio, no suffix")  # not an audio name: skipped, said so
    (src / ".hidden.wav").write_bytes(b"skipped: hidden")
    (src / "dangling.wav").symlink_to(src / "does-not-exist.wav")
    out = tmp_path / "out"
    result = encode_cli(src, out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    failed = len(bad)
    total = len(good) + failed
    # one error per bad file, naming it, then the summary. (Matched on the output with
    # line breaks removed: the batch prints through rich, which wraps long lines; see
    # test_directory_errors_are_one_line_each.)
    flat = squash(result.output)
    assert flat.count("claricodec:error:") == failed + 1, result.output
    assert squash(f"claricodec: error: {failed} of {total} files failed") in flat
    for i, name in enumerate(good + bad):
        if name in bad:
            assert re.search(re.escape(squash(f"{i:02d}{suffix[name]}: "))
                             + "((?!claricodec:error:).)*?"  # within this file's message
                             + re.escape(squash(BY_NAME[name].error)), flat), name
    assert "README" not in flat and squash("1 file not audio by name (no suffix), skipped") in flat
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.cc"))
    assert made == sorted(f"{'sub/' if i % 2 else ''}{i:02d}.cc" for i in range(len(good)))
    for path in out.rglob("*.cc"):
        read_stream(path.read_bytes())
    assert no_partial_files(out) and not (out / ".hidden.cc").exists()


def test_directory_with_unreadable_file(inputs, weights_env, tmp_path):
    """A chmod 000 file in a batch: reported, skipped, the rest encoded. Root reads such a
    file anyway; then the CLI runs as a subprocess without the capabilities that let root
    ignore file modes (setpriv), or the test is skipped."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "good.wav").write_bytes(inputs["WAV PCM_16"].read_bytes())
    locked = src / "locked.wav"
    locked.write_bytes(inputs["WAV PCM_16"].read_bytes())
    out = tmp_path / "out"
    locked.chmod(0)
    try:
        try:
            locked.read_bytes()
        except PermissionError:
            result = encode_cli(src, out)
            exit_code, output, exception = result.exit_code, result.output, result.exception
        else:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("chmod 000 does not stop this user (root) and setpriv is missing")
            import subprocess
            drop = "-dac_override,-dac_read_search"
            cli = shutil.which("claricodec")
            cmd = [cli] if cli else [sys.executable, "-c", "from claricodec.cli.main import main; main()"]
            done = subprocess.run([setpriv, f"--bounding-set={drop}", "--"] + cmd + ["encode", str(src), str(out)],
                                  capture_output=True, text=True, timeout=300,
                                  env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400"})
            if "Operation not permitted" in done.stderr and "setpriv" in done.stderr:
                pytest.skip(f"setpriv cannot drop capabilities here: {done.stderr.strip()}")
            exit_code, output, exception = done.returncode, done.stderr, None
    finally:
        locked.chmod(0o644)
    assert exit_code == 1 and "Traceback" not in output, output
    assert exception is None or isinstance(exception, SystemExit)
    flat = squash(output)
    assert flat.count("claricodec:error:") == 2, output
    assert re.search(re.escape(squash(f"{locked}: cannot read")), flat), output
    assert squash("claricodec: error: 1 of 2 files failed") in flat
    assert (out / "good.cc").is_file() and not (out / "locked.cc").exists() and no_partial_files(out)


# Batch output: one line per error, file names printed verbatim, usual permissions.

def _long_named_bad_file(tmp_path: Path, name: str) -> Path:
    src = tmp_path / "in"
    src.mkdir(parents=True, exist_ok=True)
    shutil.copy(DATA / "hello.wav", src / "good.wav")
    (src / name).write_text("not audio")
    return src


def test_directory_errors_are_one_line_each(weights_env, tmp_path):
    name = "a-rather-long-file-name-for-the-recording-of-a-meeting-" + "x" * 40 + ".wav"
    src = _long_named_bad_file(tmp_path, name)
    result = encode_cli(src, tmp_path / "out")
    lines = error_lines(result.output)
    assert len(lines) == 2 and lines[0].endswith(f"{name}: cannot read audio: Format not recognised.")


@pytest.mark.parametrize("name", ["[bold]take 1.wav", "notes [draft].wav"])
def test_directory_errors_print_names_verbatim(weights_env, tmp_path, name):
    src = _long_named_bad_file(tmp_path, name)
    result = encode_cli(src, tmp_path / "out")
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert squash(f"{name}: cannot read audio") in squash(result.output)


def test_directory_with_markup_closing_tag_in_path(weights_env, tmp_path):
    src = tmp_path / "in["
    (src / "sub]").mkdir(parents=True)  # the path holds "[/sub]"
    (src / "sub]" / "notes.wav").write_text("not audio")
    shutil.copy(DATA / "hello.wav", src / "good.wav")
    result = encode_cli(src, tmp_path / "out")
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1 and squash("notes.wav: cannot read audio") in squash(result.output)


def test_outputs_get_the_usual_permissions(weights_env, tmp_path):
    out = tmp_path / "x.cc"
    old = os.umask(0o022)
    try:
        assert encode_cli(DATA / "hello.wav", out).exit_code == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644


# --- the library API ----------------------------------------------------------------------

def test_api_success_cases(tiny_codec, speech):
    audio, rate = speech
    frames = lambda data: len(read_stream(data).indices)  # noqa: E731
    n = math.ceil(len(audio) / RATE / HOP_S)
    reference = tiny_codec.encode(audio, rate)
    assert frames(reference) == n
    # integer PCM is scaled like soundfile does: same codes as the float read
    for dtype in ("int16", "int32"):
        pcm, _ = sf.read(DATA / "hello.wav", dtype=dtype)
        assert tiny_codec.encode(pcm, rate) == reference, dtype
    assert frames(tiny_codec.encode(np.stack([audio, audio], 1), rate)) == n
    assert frames(tiny_codec.encode(audio.astype(np.float64), float(rate))) == n
    assert frames(tiny_codec.encode(audio[:10], rate)) == 1
    assert frames(tiny_codec.encode(np.zeros(RATE, np.float32), rate)) == 25


API_ERRORS = [  # (id, what, audio, rate, expected message)
    ("empty", "np.zeros(0)", np.zeros(0, np.float32), RATE, "audio is empty"),
    ("empty-2d", "np.zeros((0, 2))", np.zeros((0, 2), np.float32), RATE, "audio is empty"),
    ("no-channels", "np.zeros((100, 0))", np.zeros((100, 0), np.float32), RATE, "no channels"),
    ("channels-first", "np.zeros((2, 80000)): [channels, samples]", np.zeros((2, 5 * RATE), np.float32),
     RATE, "looks like [channels, samples]"),
    ("3-d", "np.zeros((1, 16000, 1))", np.zeros((1, RATE, 1), np.float32), RATE,
     "must be 1-D or [samples, channels]"),
    ("nan", "all NaN", np.full(RATE, np.nan, np.float32), RATE, "NaN or infinite"),
    ("-inf", "all -inf, float64", np.full(RATE, -np.inf), RATE, "NaN or infinite"),
    ("rate-0", "sample_rate=0", np.zeros(RATE, np.float32), 0, "invalid sample rate 0"),
    ("rate-negative", "sample_rate=-8000", np.zeros(RATE, np.float32), -8000, "invalid sample rate -8000"),
    ("rate-none", "sample_rate=None", np.zeros(RATE, np.float32), None, "invalid sample rate None"),
]


@pytest.mark.parametrize("audio, rate, message", [case[2:] for case in API_ERRORS],
                         ids=[case[0] for case in API_ERRORS])
def test_api_errors(tiny_codec, audio, rate, message):
    with pytest.raises(AudioError) as err:
        tiny_codec.encode(audio, rate)
    assert message in str(err.value) and "\n" not in str(err.value)


# --- docs/robustness.md -------------------------------------------------------------------

def _table() -> str:
    """Run every case through the CLI (file argument and stdin) and the API; Markdown rows."""
    import tempfile

    import torch
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import make_weights
    torch.set_num_threads(1)

    def describe(result: Outcome, case: Case, path: Path, tmp: Path) -> str:
        if result.written is not None:
            stream = read_stream(result.written)
            expected = expected_frames(case, path)
            text = (f"{len(stream.indices)} frames (expected ceil({expected:.2f}) = "
                    f"{math.ceil(expected)})")
        else:
            lines = error_lines(result.output) or [repr(result.exception)]
            text = "`" + lines[0].replace(str(tmp / "in") + "/", "IN/") + "`"
        if "Traceback" in result.output or not (result.exception is None
                                                or isinstance(result.exception, SystemExit)):
            text += f" **CRASH: {result.exception!r}**"
        return f"{result.exit_code} | {text}"

    rows = ["| case | input | file: exit | file: result | stdin: exit | stdin: result |",
            "|---|---|---:|---|---:|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["CLARICODEC_WEIGHTS"] = str(make_weights(tmp / "weights"))
        (tmp / "in").mkdir()
        for case in CASES:
            path = case.make(tmp / "in")
            by_file = encode_cli(path, tmp / "out" / (path.name + ".cc"))
            by_stdin = encode_cli("-", tmp / "out" / (path.name + ".stdin.cc"), stdin=path.read_bytes())
            rows.append(f"| {case.name} | {case.what} | {describe(by_file, case, path, tmp)} | "
                        f"{describe(by_stdin, case, path, tmp)} |")
        from claricodec.api import ClariCodec
        codec = ClariCodec(os.environ["CLARICODEC_WEIGHTS"])
        api = ["", "| API call `ClariCodec.encode(audio, rate)` | exception |", "|---|---|"]
        for _, what, audio, rate, _ in API_ERRORS:
            try:
                codec.encode(audio, rate)
                outcome = "no exception"
            except Exception as err:  # noqa: BLE001 - the table records whatever happens
                outcome = f"`{type(err).__name__}: {err}`"
            api.append(f"| {what} | {outcome} |")
    return "\n".join(rows + api)


if __name__ == "__main__":
    print(_table())
