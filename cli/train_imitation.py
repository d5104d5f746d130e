"""`claricodec train targets|imitate`: stage 2 by expert iteration (see train/imitation.py).

    claricodec encode --search 8 AUDIO CODES         # the expert: search-encode train audio
    claricodec train targets AUDIO CODES --out T     # what it chose, and a matched control
    claricodec train imitate T --weights W           # teach the encoder; adds 'rl' to W
    claricodec train imitate T --weights W --control # the same, toward the control targets
"""
from __future__ import annotations

from pathlib import Path

import click

from .ui import console, fail, pick_device, progress_bar


@click.command()
@click.argument("audio_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("code_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Target set directory to write (outside git: it holds the audio).")
@click.option("--weights", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Weights the codes were searched with (default: the shipped ones).")
@click.option("--candidates", type=click.IntRange(2, 64), default=8, show_default=True,
              help="The N of the `encode --search N` that made CODE_DIR.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True, help="CPU threads.")
def targets(audio_dir, code_dir, out, weights, candidates, threads):
    """Pair search-encoded files (CODE_DIR, from `encode --search N AUDIO_DIR CODE_DIR`)
    with their audio: which candidate the search kept per window, and a control target
    (same windows moved off the argmax, by a random candidate instead of the ASR's)."""
    import torch
    from claricodec.train.imitation import TargetError, collect, searched_pairs

    from .train import _load_stage1

    torch.set_num_threads(threads)
    codec, _ = _load_stage1(weights, "cpu")
    try:
        pairs = searched_pairs(audio_dir, code_dir)
        if not pairs:
            fail(f"no .cc files under {code_dir}")
        with progress_bar() as bar:
            task = bar.add_task("collecting", total=len(pairs))
            meta = collect(codec, pairs, out, candidates, progress=lambda: bar.advance(task))
    except TargetError as err:
        fail(str(err))
    console.print(f"{meta['windows']} windows from {meta['files']} files; the search moved "
                  f"{meta['moved_windows']} off the argmax; written to {out}")


@click.command()
@click.argument("target_set", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--weights", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Weights with the stage-1 encoder and decoder (default: the shipped ones). "
                   "The trained encoder is added to them as 'rl'.")
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="Resume state and logs (default ~/.cache/claricodec/runs/imitate[-control]).")
@click.option("--control", is_flag=True,
              help="Train toward the control targets (no ASR choice); the encoder goes to the run dir.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Total steps (default 600).")
@click.option("--until", type=click.IntRange(min=1), default=None, help="Stop after this many steps in total.")
@click.option("--batch", "batch_windows", type=click.IntRange(min=1), default=None,
              help="Windows per step (default 16).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Learning rate (default 5e-5).")
@click.option("--kl-weight", type=click.FloatRange(min=0), default=None,
              help="Weight of the KL to the stage-1 policy (default 0.05).")
@click.option("--mel-weight", type=click.FloatRange(min=0), default=None,
              help="Weight of the mel loss on the argmax path (default 1.0).")
@click.option("--export/--no-export", default=True, show_default=True,
              help="Write the encoder when the run reaches --steps.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True, help="CPU threads.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def imitate(target_set, weights, run_dir, control, steps, until, batch_windows, lr, kl_weight,
            mel_weight, export, threads, device):
    """Stage 2 by expert iteration: teach the encoder the codes the search chose.

    TARGET_SET comes from `claricodec train targets`. Run it once as is and once with
    --control (same steps): only a gain over the control is the search's."""
    import torch
    from claricodec.train.data import DEFAULT_CACHE
    from claricodec.train.imitation import ImitationConfig, ImitationTrainer, TargetError, TargetSet
    from claricodec.weights import add_encoder, save_encoder
    from .train import _git_commit, _load_stage1

    torch.set_num_threads(threads)
    codec, weights = _load_stage1(weights, pick_device(device))
    cfg = ImitationConfig(target="control" if control else "expert")
    for name, value in (("steps", steps), ("batch_windows", batch_windows), ("lr", lr),
                        ("kl_weight", kl_weight), ("mel_weight", mel_weight)):
        if value is not None:
            setattr(cfg, name, value)
    run_dir = run_dir or DEFAULT_CACHE / "runs" / ("imitate-control" if control else "imitate")
    try:
        trainer = ImitationTrainer(codec, cfg, TargetSet(target_set), run_dir, log=console.print)
        if trainer.resume():
            console.print(f"resumed at step {trainer.step}")
    except TargetError as err:
        fail(str(err))
    target = min(until or cfg.steps, cfg.steps)
    with progress_bar() as bar:
        task = bar.add_task("imitate", total=target, completed=trainer.step)
        trainer.run(target, lambda step, s: bar.update(
            task, completed=step, description=f"imitate ce {s['ce']:.3f} kl {s['kl']:.4f} mel {s['mel']:.3f}"))
    if not export or trainer.step < cfg.steps:
        console.print(f"stopped at step {trainer.step}; state in {run_dir}")
        return
    training = {"stage": 2, "method": "expert iteration (imitation of encode --search)",
                "target": cfg.target, "steps": trainer.step, "wall_hours": round(trainer.wall / 3600, 2),
                "lr": cfg.lr, "kl_weight": cfg.kl_weight, "mel_weight": cfg.mel_weight,
                "target_set": trainer.targets.meta, "commit": _git_commit()}
    if control:
        save_encoder(codec, run_dir / "encoder-control.safetensors")
        console.print(f"control encoder written to {run_dir / 'encoder-control.safetensors'}")
    else:
        add_encoder(codec, weights, "rl", training)
        console.print(f"RL encoder added to {weights} (default encoder now 'rl')")
