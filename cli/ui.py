"""Terminal output shared by the commands: everything goes to stderr, never stdout."""
from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

# Literal text only: file names like "take[/1].wav" must never be read as rich markup, and
# one error stays one line (soft_wrap: no hard wrapping at the terminal width).
console = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)


def fail(message: str, code: int = 1):
    """One-line error on stderr and a non-zero exit; never a traceback."""
    click.echo(f"claricodec: error: {message}", err=True)
    sys.exit(code)


def progress_bar(transient: bool = False) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                    transient=transient)


def pick_device(name: str) -> str:
    import torch
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        fail("--device cuda asked for, but no CUDA device is available")
    return name


LONG_SECONDS = 60.0  # single files longer than this get a progress bar


def track_audio(blocks, total_seconds: float | None, rate: int, label: str):
    """Pass blocks through, advancing a transient progress bar by their duration."""
    if not total_seconds or total_seconds < LONG_SECONDS:
        yield from blocks
        return
    with progress_bar(transient=True) as bar:
        task = bar.add_task(label, total=round(total_seconds))
        for block in blocks:
            yield block
            bar.advance(task, len(block) / rate)
