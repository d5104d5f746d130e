"""`claricodec encode`, `decode` and `info`."""
from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.text import Text

from .files import (STDIO, JobError, interrupts_as_keyboard_interrupt, open_input, output_file,
                    plan_jobs, read_input)
from .ui import console, fail, pick_device, progress_bar, track_audio

weights_option = click.option(
    "--weights", type=click.Path(path_type=Path, file_okay=False), default=None,
    envvar="CLARICODEC_WEIGHTS", show_envvar=True,
    help="Weights directory (manifest.json + files). Default: the shipped weights.")
device_option = click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
    help="auto = CUDA when present.")
force_option = click.option("--force", is_flag=True,
                            help="Directory mode: redo outputs that already exist.")
search_segment_option = click.option(
    "--search-segment", type=click.FloatRange(0.04, 10), default=None, metavar="SECONDS",
    help="With --search: choose per segment of this many seconds (left to right, each "
         "segment from whichever draw the judge prefers there, the draws hotter) instead of "
         "per 10 s window. 1: about three times the words a whole-window search brings back "
         "(dev WER 38.8 -> 31.4 %), at a third of its speed (~2x real time on 2 cores).")


def load(weights, encoder, device, search=1, asr=None, search_judge=None, search_segment=None,
         phrases=True, phase_search=False):
    from claricodec.api import ClariCodec
    from claricodec.asr import ASRError
    from claricodec.weights import WeightsError
    try:
        codec = ClariCodec(weights, encoder, pick_device(device), search=search, asr=asr,
                            search_judge=search_judge, search_segment=search_segment, phrases=phrases,
                            phase_search=phase_search)
    except (WeightsError, ASRError) as err:
        fail(str(err))
    if codec.info.get("status") != "trained":
        console.print(Text("warning: ", style="yellow") + Text(
            f"these weights are not a finished codec (status: {codec.info.get('status')}); "
            "expect poor speech"))
    return codec


def run_jobs(source: str, target: str, out_suffix: str, force: bool, work,
             input_suffixes: frozenset[str] | None = None) -> None:
    """Run work(job, single) for each job; report failures one line each; exit 1 if any
    failed. `single` is True for a lone file, which may show its own progress bar."""
    try:
        jobs, skipped = plan_jobs(source, target, out_suffix, force, input_suffixes)
    except JobError as err:
        fail(str(err))
    for note in skipped:
        console.print(note)
    failures = 0
    with interrupts_as_keyboard_interrupt():
        try:
            if len(jobs) == 1 and not Path(source).is_dir():
                try:
                    work(jobs[0], True)
                except JobError as err:
                    fail(str(err))
                return
            with progress_bar() as bar:
                task = bar.add_task(f"{len(jobs)} files", total=len(jobs))
                for job in jobs:
                    try:
                        work(job, False)
                    except JobError as err:
                        bar.console.print(f"claricodec: error: {err}")
                        failures += 1
                    bar.advance(task)
        except KeyboardInterrupt:
            click.echo("claricodec: interrupted; finished files are kept, no partial file was "
                       "left, rerun to do the rest", err=True)
            raise SystemExit(130)
    if failures:
        fail(f"{failures} of {len(jobs)} files failed")


@click.command()
@click.argument("source", metavar="IN")
@click.argument("target", metavar="OUT")
@weights_option
@click.option("--encoder", default=None,
              help="Encoder named in the weights manifest (stage1, rl) or a .safetensors file.")
@click.option("--crc", is_flag=True, help="Add a CRC-8 after every second of frames (+8 bit/s).")
@click.option("--raw", is_flag=True, help="Headerless payload only: the receiver must know mode and weights.")
@click.option("--mode", type=click.Choice(["1", "2"]), default="1", show_default=True,
              help="1: one byte a frame, 200 bit/s, a bit error costs one frame (--crc finds "
                   "them). 2: the same codes entropy-coded, ~165 bit/s on average (varies with "
                   "the speech), the same audio out; a bit error garbles the rest of the file, "
                   "so only for links that deliver bytes intact.")
@click.option("--search", type=click.IntRange(1, 64), default=1, show_default=True, metavar="N",
              help="Try N code sequences per 10 s and keep the one judged closest to the input "
                   "(--search-judge; slower encoding, same bit rate, any receiver decodes it).")
@click.option("--search-judge", type=click.Choice(["states", "asr"]), default=None,
              help="With --search: what picks the sequence. states (the default): how close "
                   "Whisper's encoder states of each decoded candidate are to the input's; "
                   "another family of recogniser hears its gain too. asr (the default with "
                   "--asr): Whisper's transcript of each candidate against its transcript of "
                   "the input; needs the [eval] extra.")
@click.option("--asr", default=None, metavar="MODEL",
              help="With --search-judge asr: the judging ASR, a faster-whisper model name or path "
                   "(default: Whisper tiny.en, installed offline).")
@search_segment_option
@click.option("--fixed-windows", is_flag=True,
              help="Encode a signal over 10 s in fixed 10 s windows (as until session 25), not "
                   "phrase by phrase at its pauses (fewer words through; what `train targets` reads).")
@click.option("--phase-search", is_flag=True,
              help="Code each phrase twice, as is and with its frames moved 20 ms against the "
                   "speech, and keep the one Whisper's encoder states find closer to the input "
                   "(fewer word errors, 3x the encoding time; no gain on top of "
                   "--search-segment). Same bits and format: any decoder plays it.")
@device_option
@force_option
def encode(source, target, weights, encoder, crc, raw, mode, search, search_judge, asr, search_segment,
           fixed_windows, phase_search, device, force):
    """Encode speech to a 200 bit/s .cc file (--mode 2: ~165 bit/s, variable).

    IN is any audio file soundfile can read (any rate, any channels), '-' for stdin, or a
    directory (then OUT is a directory and the tree's audio files, by name: .wav, .flac,
    .ogg, .opus, .mp3, ..., are mirrored there as .cc files; other files are skipped).
    OUT is a file, '-' for stdout, or a directory.
    """
    if crc and raw:
        fail("--crc and --raw exclude each other (a raw stream has no framing for CRCs)")
    if crc and mode != "1":
        fail(f"--crc needs --mode 1 (mode {mode} has no CRC blocks)")
    if asr and search == 1:
        fail("--asr only matters with --search N (N > 1)")
    if asr and search_judge == "states":
        fail("--asr only matters with --search-judge asr (the states judge uses the encoder's Whisper)")
    if search_judge and search == 1:
        fail("--search-judge only matters with --search N (N > 1)")
    if search_segment and search == 1:
        fail("--search-segment only matters with --search N (N > 1)")
    if phase_search and fixed_windows:
        fail("--phase-search works phrase by phrase: not with --fixed-windows")
    codec = load(weights, encoder, device, search, asr, search_judge, search_segment,
                 phrases=not fixed_windows, phase_search=phase_search)
    from claricodec.audio import AudioError
    from claricodec.stream_io import AUDIO_SUFFIXES, open_audio, resampled_blocks

    def work(job, single):
        name = "stdin" if job.source == STDIO else job.source
        if job.source != STDIO and not Path(job.source).exists():
            raise JobError(f"{name}: no such file")
        try:
            reader = open_audio(job.source if job.source != STDIO else sys.stdin.buffer)
            blocks = resampled_blocks(reader, codec.mode.sample_rate)
            if single:
                blocks = track_audio(blocks, reader.seconds, codec.mode.sample_rate, "encoding")
            # From a pipe the length is unknown until the end: stream with an
            # unknown-length header, so an endless input keeps producing frames.
            pieces = codec.encode_blocks(blocks, block_crc=crc, raw=raw, mode=int(mode),
                                         known_length=job.source != STDIO)
            with output_file(job.target) as out:
                for piece in pieces:
                    out.write(piece)
                    out.flush()
        except AudioError as err:
            raise JobError(f"{name}: {err}") from None

    run_jobs(source, target, ".cc", force, work, AUDIO_SUFFIXES)
    if codec.search and codec.search.windows:
        judge = "states" if codec.search.asr is None else "asr"
        unit = (f"segments ({search_segment:g} s each)" if search_segment else "windows (10 s each)")
        console.print(f"search ({judge} judge): a policy draw beat the codes before it in "
                      f"{codec.search.chosen_sample} of {codec.search.choices} {unit}")
    if codec.phase_tally.phrases:
        console.print(f"phase search: {codec.phase_tally.moved} of {codec.phase_tally.phrases} "
                      "phrases sent 20 ms later in their frames")


@click.command()
@click.argument("source", metavar="IN")
@click.argument("target", metavar="OUT")
@weights_option
@click.option("--rate", type=click.IntRange(8000, 192000), default=None,
              help="Output sample rate (default 16000).")
@click.option("--raw", is_flag=True, help="IN is a headerless payload (of --mode, these weights).")
@click.option("--mode", type=click.Choice(["1", "2"]), default=None,
              help="With --raw: the payload's mode (default 1); a .cc header names its own.")
@click.option("--ignore-crc", is_flag=True,
              help="Decode through CRC failures, concealing the damaged seconds.")
@click.option("--erasures", metavar="FRAMES", default=None,
              help="Frames known lost on the link, concealed in the latent: e.g. 40-49,75 "
                   "(frame = 40 ms, counted from 0).")
@click.option("--format", "out_format", type=click.Choice(["wav", "flac", "ogg"]), default=None,
              help="Directory mode: the decoded files' format (default wav). A single OUT "
                   "file's name picks its own.")
@device_option
@force_option
def decode(source, target, weights, rate, raw, mode, ignore_crc, erasures, out_format, device, force):
    """Decode a .cc file to a 16-bit WAV (or FLAC, Ogg Vorbis).

    IN is a .cc file (recognised by content), '-' for stdin, or a directory of them;
    OUT is a .wav file ('.flac' or '.ogg' for those formats, anything else is WAV),
    '-' for stdout (WAV), or a directory (tree mirrored, .wav files or --format's).
    """
    if mode and not raw:
        fail("--mode only matters with --raw (a .cc header names its mode)")
    if out_format and not Path(source).is_dir():
        fail("--format is for a directory of inputs: a single OUT file's name picks its format "
             "(.wav, .flac, .ogg; '-' is WAV)")
    codec = load(weights, None, device)
    from claricodec.bitstream import FormatError
    from claricodec.stream_io import COMPRESSED_OUTPUTS, CompressedWriter, WavWriter, resample_stream
    lost = parse_frame_list(erasures)
    sample_rate = codec.mode.sample_rate
    out_rate = rate or sample_rate

    def work(job, single):
        name = "stdin" if job.source == STDIO else job.source
        try:
            with open_input(job.source) as src:
                header, chunks = codec.open_stream(src, raw=raw, tolerate_crc_errors=ignore_crc,
                                                   mode=int(mode) if mode else None)
                length = round(header.num_samples * out_rate / sample_rate) or None
                frames = FrameCount(chunks)
                blocks = codec.decode_blocks(header, frames, lost)
                if single:
                    blocks = track_audio(blocks, header.num_samples / sample_rate, sample_rate,
                                         "decoding")
                suffix = Path(job.target).suffix.lower()
                with output_file(job.target) as out:
                    writer = (CompressedWriter(out, suffix, out_rate, length)
                              if job.target != STDIO and suffix in COMPRESSED_OUTPUTS
                              else WavWriter(out, out_rate, length))
                    for audio in resample_stream(blocks, sample_rate, out_rate):
                        writer.write(audio)
                    writer.close()
        except FormatError as err:
            raise JobError(f"{name}: {err}") from None
        past = [frame for frame in lost if frame >= frames.count]
        if past:
            console.print(Text("warning: ", style="yellow") + Text(
                f"{name}: {len(past)} --erasures frame{'s' * (len(past) > 1)} (from {past[0]}) "
                f"past its end ({frames.count} frames, 0-{frames.count - 1}): nothing there to conceal"))

    run_jobs(source, target, f".{out_format or 'wav'}", force, work)


class FrameCount:
    """Passes open_stream's chunks through, counting their frames."""

    def __init__(self, chunks):
        self.chunks, self.count = chunks, 0

    def __iter__(self):
        for indices, bad in self.chunks:
            self.count += len(indices)
            yield indices, bad


def parse_frame_list(text: str | None) -> list[int]:
    """'3,10-12' -> [3, 10, 11, 12]."""
    frames = []
    for part in (text or "").replace(" ", "").split(","):
        if not part:
            continue
        try:
            first, _, last = part.partition("-")
            first, last = int(first), int(last or first)
        except ValueError:
            fail(f"--erasures: {part!r} is not a frame number or range like 10-20")
        if last < first:
            fail(f"--erasures: {part!r} ends before it starts")
        frames.extend(range(first, last + 1))
    return sorted(set(frames))


@click.command()
@click.argument("source", metavar="FILE")
@weights_option
def info(source, weights):
    """Show what a .cc file holds: mode, frames, duration, bit rate, model id."""
    from claricodec.bitstream import FormatError, read_stream
    from claricodec.modes import get_mode
    try:
        data = read_input(source)
        stream = read_stream(data, tolerate_crc_errors=True)
    except (JobError, FormatError) as err:
        fail(f"{source}: {err}")
    header, mode = stream.header, get_mode(stream.header.mode)
    frames = len(stream.indices)
    seconds = (header.num_samples or frames * mode.hop) / mode.sample_rate
    click.echo(f"file:        {source}")
    if mode.entropy_coded:
        click.echo(f"format:      .cc version {header.version}, mode {mode.id} ({mode.frame_rate:g} frames/s, "
                   f"entropy-coded ({mode.context_table}): variable bit rate)")
    else:
        click.echo(f"format:      .cc version {header.version}, mode {mode.id} "
                   f"({mode.frame_rate:g} frames/s x {mode.bits_per_frame} bits = {mode.bit_rate:g} bit/s payload)")
    click.echo(f"frames:      {frames}" + ("" if header.num_samples else " (length not in header: stream)"))
    click.echo(f"duration:    {seconds:.2f} s")
    click.echo(f"size:        {len(data)} bytes = {len(data) * 8 / seconds:.1f} bit/s including header"
               if seconds else f"size:        {len(data)} bytes")
    click.echo(f"block crc:   {'yes' if header.block_crc else 'no'}"
               + (f" ({len(stream.bad_frames)} frames in failed blocks)" if stream.bad_frames else ""))
    if header.lead:
        click.echo(f"lead:        yes: the frames start {1000 * header.lead_samples / mode.sample_rate:g} ms "
                   "before the signal (session 26's --phase-search)")
    click.echo(f"model id:    {header.model_id.hex()}" + _model_note(header.model_id.hex(), weights))


def _model_note(model_id: str, weights) -> str:
    from claricodec.weights_manifest import WeightsError, default_weights_dir, read_manifest
    try:
        manifest = read_manifest(weights or default_weights_dir())
    except WeightsError:
        return ""
    if manifest.get("model_id") == model_id:
        return " (matches these weights)"
    if model_id in manifest.get("legacy_decoders", {}):
        return f" (earlier weights; these ({manifest.get('model_id')}) still decode it)"
    return f" (NOT these weights: {manifest.get('model_id')})"
