"""Where bytes come from and go to: files, `-` (stdin/stdout) and mirrored directory trees.

Outputs are written to a temporary name beside the target and renamed into place, so an
error, Ctrl-C or SIGTERM never leaves a half-written file under the real name.
"""
from __future__ import annotations

import os
import signal
import sys
import secrets
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

STDIO = "-"


class JobError(Exception):
    """One input could not be processed; the message names it. The batch goes on."""


@dataclass
class Job:
    source: str  # path or "-"
    target: str  # path or "-"


def read_input(source: str) -> bytes:
    with open_input(source) as f:
        return f.read()


def open_input(source: str) -> BinaryIO:
    if source == STDIO:
        return nullcontext(sys.stdin.buffer)
    try:
        return open(source, "rb")
    except IsADirectoryError:
        raise JobError(f"{source}: is a directory (the output must then be a directory too)") from None
    except OSError as err:
        raise JobError(f"{source}: cannot read ({err.strerror})") from None


@contextmanager
def output_file(target: str) -> Iterator[BinaryIO]:
    """A binary file to write into. A real file is written under a temporary name and
    renamed into place only when the body finishes: on any error, Ctrl-C or SIGTERM the
    temporary file is removed and the target is left as it was."""
    if target == STDIO:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    path = Path(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise JobError(f"{target}: cannot write ({err.strerror})") from None
    # The name is chosen before the file exists and created inside the try, so a signal
    # at any point leaves either nothing or a file this block removes; plain open() also
    # honours the umask, as the final file should.
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.partial"
    try:
        with open(tmp, "xb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):  # disk full, permissions, ...: one line, no traceback
            raise JobError(f"{target}: {err.strerror or err}") from None
        raise


def plan_jobs(source: str, target: str, out_suffix: str, force: bool,
              input_suffixes: frozenset[str] | None = None) -> tuple[list[Job], list[str]]:
    """One job for a file, or one per file of a directory tree, mirrored under target.

    In a tree, only files named with one of `input_suffixes` (all files when None) are
    inputs: a corpus folder's manifest or README is not a failed input. Returns the jobs
    and the notes about what was skipped (other files, existing outputs; hidden files
    silently).
    """
    if source == STDIO or not Path(source).is_dir():
        if target != STDIO and Path(target).is_dir():
            raise JobError(f"{target}: is a directory; give an output file name")
        if source != STDIO and target != STDIO and _same_file(source, target):
            raise JobError(f"{target}: output would overwrite the input")
        return [Job(source, target)], []
    if target == STDIO:
        raise JobError("a directory input needs a directory output, not '-'")
    src_root, out_root = Path(source).resolve(), Path(target).resolve()
    if out_root.exists() and not out_root.is_dir():
        raise JobError(f"{target}: exists and is not a directory")
    if out_root == src_root or src_root in out_root.parents:
        # Refused rather than guessed at: a rerun would treat our outputs as inputs.
        raise JobError(f"{target}: the output directory must not be inside the input directory")
    jobs, skipped, claimed, others = [], [], {}, []
    for path in sorted(src_root.rglob("*")):
        rel = path.relative_to(src_root)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if input_suffixes is not None and path.suffix.lower() not in input_suffixes:
            others.append(path.suffix.lower() or "no suffix")
            continue
        out = out_root / rel.with_suffix(out_suffix)
        if out in claimed:
            skipped.append(f"{path}: output {out} already comes from {claimed[out]}, skipped")
            continue
        claimed[out] = path
        if out.exists() and not force:
            skipped.append(f"{out}: exists, skipped (use --force to redo)")
            continue
        jobs.append(Job(str(path), str(out)))
    if others:
        kinds = ", ".join(sorted(set(others)))
        skipped.append(f"{source}: {len(others)} file{'s' * (len(others) > 1)} not audio by name "
                       f"({kinds}), skipped")
    return jobs, skipped


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


@contextmanager
def interrupts_as_keyboard_interrupt():
    """SIGTERM behaves like Ctrl-C, so cleanup (temp files) runs for both."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
