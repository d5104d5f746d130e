"""Ctrl-C and SIGTERM in the middle of a directory batch, on a real `claricodec` process.

The promise (README, cli/files.py): finished files are kept, no half-written file is left
under any name, the exit status is non-zero, and a rerun does the rest, ending with
exactly the files a clean run makes.

Timing: each file takes tens of milliseconds with the tiny model, so the test polls the
output folder every millisecond and signals as soon as the first output appears. Should
the batch still finish before the signal lands (a very slow poller), the attempt is
repeated in a fresh folder; waits are generous (model load on a busy machine) but bounded.

Two deterministic tests below pin the windows where this once went wrong: a signal just
before an output is renamed into place, and a signal while a pipe is being read.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from claricodec.bitstream import read_stream

DATA = Path(__file__).parent / "data"
COPIES = 30
START_TIMEOUT = 120.0  # s, until the first output (python + torch import + model load)
RUN_TIMEOUT = 180.0  # s, for a whole run
ATTEMPTS = 3

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def command() -> list[str]:
    script = shutil.which("claricodec")
    if script:
        return [script]
    return [sys.executable, "-c", "from claricodec.cli.main import main; main()"]


@pytest.fixture(scope="module")
def env(tiny_weights) -> dict[str, str]:
    # One thread: the same thread count in every run (codes are reproducible per thread
    # count), and no oversubscription on a small machine.
    return {**os.environ, "CLARICODEC_WEIGHTS": str(tiny_weights), "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "COLUMNS": "200"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("interrupt_inputs")
    for i in range(COPIES):
        shutil.copy(DATA / "hello.wav", folder / f"hello{i:02d}.wav")
    return folder


def as_at_a_terminal() -> None:
    """In the child: SIGINT as at an interactive terminal. A shell starts background jobs
    with SIGINT ignored (and the tests may run as one, e.g. `bash .ci/run &`); an ignored
    signal stays ignored across exec, and the batch would rightly run through Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def encode(src: Path, out: Path, env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as stderr:
        return subprocess.Popen(command() + ["encode", str(src), str(out)], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                preexec_fn=as_at_a_terminal)


def finish(proc: subprocess.Popen, timeout: float = RUN_TIMEOUT) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"claricodec did not finish within {timeout:.0f} s")


def outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.cc"))}


def partial_files(out: Path) -> list[str]:
    return [p.name for p in out.rglob("*") if p.name.endswith(".partial")]


@pytest.fixture(scope="module")
def clean(inputs, env, tmp_path_factory) -> dict[str, bytes]:
    """What an uninterrupted run makes."""
    folder = tmp_path_factory.mktemp("clean")
    rc = finish(encode(inputs, folder / "out", env, folder / "stderr.txt"))
    assert rc == 0, (folder / "stderr.txt").read_text()
    made = outputs(folder / "out")
    assert len(made) == COPIES
    return made


def interrupted_run(inputs: Path, out: Path, env: dict, log: Path, signum: int) -> int | None:
    """Start a batch, signal it once the first output exists; return its exit status.
    None when the batch finished cleanly before the signal could land."""
    proc = encode(inputs, out, env, log)
    deadline = time.monotonic() + START_TIMEOUT
    while not (out.is_dir() and any(out.glob("*.cc"))):
        if proc.poll() is not None:
            pytest.fail(f"claricodec exited ({proc.returncode}) before writing anything: "
                        f"{log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"no output within {START_TIMEOUT:.0f} s")
        time.sleep(0.001)
    proc.send_signal(signum)
    rc = finish(proc)
    if rc == 0 and len(outputs(out)) == COPIES:
        return None  # too late: everything was done
    return rc


def check_outputs(out: Path, clean: dict[str, bytes]) -> dict[str, bytes]:
    done = outputs(out)
    for name, data in done.items():
        read_stream(data)  # whole, parseable files only ...
        assert data == clean[name], name  # ... and exactly what a clean run writes
    return done


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_batch_leaves_whole_files_and_resumes(signum, inputs, env, clean, tmp_path):
    for attempt in range(ATTEMPTS):
        out, log = tmp_path / f"out{attempt}", tmp_path / f"stderr{attempt}.txt"
        rc = interrupted_run(inputs, out, env, log, signum)
        stderr = log.read_text(errors="replace")
        if rc is not None:
            break
    else:
        pytest.fail(f"the batch finished before the signal landed, {ATTEMPTS} times")
    assert rc != 0, stderr
    assert "Traceback" not in stderr, stderr
    assert "interrupted" in stderr, stderr
    assert partial_files(out) == [], partial_files(out)
    done = check_outputs(out, clean)
    assert 0 < len(done) < COPIES, (rc, len(done))

    rerun_log = tmp_path / "rerun.txt"
    rc = finish(encode(inputs, out, env, rerun_log))
    rerun_stderr = rerun_log.read_text(errors="replace")
    assert rc == 0, rerun_stderr
    assert rerun_stderr.count("exists, skipped") == len(done)
    assert partial_files(out) == []
    assert outputs(out) == clean


def test_signal_just_before_the_rename_leaves_nothing(tiny_weights, monkeypatch, tmp_path):
    """Deterministic: SIGTERM lands when an output is complete under its temporary name,
    just before it is renamed into place. In process, through click's runner."""
    from click.testing import CliRunner

    import claricodec.cli.files as files
    from claricodec.cli.main import main
    real_replace = files.os.replace
    sent = []

    def replace(src, dst):
        # Only with a Python handler installed (the CLI's): never kill the test run.
        if not sent and callable(signal.getsignal(signal.SIGTERM)):
            sent.append(dst)
            os.kill(os.getpid(), signal.SIGTERM)
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    monkeypatch.setenv("CLARICODEC_WEIGHTS", str(tiny_weights))
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        shutil.copy(DATA / "hello.wav", src / f"hello{i}.wav")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["encode", str(src), str(out)])
    assert sent, "the signal was never sent: outputs are no longer renamed into place"
    assert result.exit_code == 130, result.output
    assert partial_files(out) == [] and not Path(sent[0]).exists()


def test_sigterm_while_a_pipe_is_read_stops(tiny_weights, monkeypatch, tmp_path):
    """Deterministic: SIGTERM arrives while FLAC from stdin is being read (spooled to a
    temporary file for libsndfile). The run must stop with 130, not end early quietly."""
    import io

    import soundfile as sf
    from click.testing import CliRunner

    import claricodec.stream_io
    from claricodec.cli.main import main
    real_copy = claricodec.stream_io.shutil.copyfileobj
    sent = []

    def copyfileobj(source, target, *args):
        if not sent and callable(signal.getsignal(signal.SIGTERM)):
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
        return real_copy(source, target, *args)

    monkeypatch.setattr(claricodec.stream_io.shutil, "copyfileobj", copyfileobj)
    monkeypatch.setenv("CLARICODEC_WEIGHTS", str(tiny_weights))
    audio, rate = sf.read(DATA / "hello.wav", dtype="float32")
    flac = io.BytesIO()
    sf.write(flac, audio, rate, format="FLAC")
    out = tmp_path / "x.cc"
    result = CliRunner().invoke(main, ["encode", "-", str(out)], input=flac.getvalue())
    assert sent, "the signal was never sent: the CLI no longer reads this way"
    assert result.exit_code == 130, result.output
    assert not out.exists() and partial_files(tmp_path) == []
