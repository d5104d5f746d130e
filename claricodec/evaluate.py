"""Intelligibility evaluation: code each utterance, transcribe, score against the transcript.

One implementation for `claricodec eval` and bench/peers.py:

    systems = [ClariCodecSystem(codec)]                    # anything with .name/.code()
    results = run(read_manifest(path), systems, ASR(), EVAL, workdir)
    report = summarize(results, ["decoded"])

Every utterance is also transcribed uncoded (system "original"): that gives the baseline
WER, and the reference for utterances without a transcript (then "original" scores 0 by
construction, and the report says how many such utterances there are).

Corpus WER/CER are total edits / total reference words (characters), jiwer-style, never
a mean of per-utterance rates. The difference of a system from the original comes with a
paired bootstrap 95 % interval: utterances are resampled with replacement and both
systems are scored on the same resample.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from .textnorm import Errors, count_errors

RATE = 16000
ORIGINAL = "original"


def spread(rows: list, limit: int | None) -> list:
    """`limit` rows evenly spaced through the list (manifests are ordered by source and
    speaker, so the first N would be one speaker)."""
    if not limit or limit >= len(rows):
        return rows
    return [rows[i * len(rows) // limit] for i in range(limit)]


@dataclass
class Coded:
    """What a system made of one utterance."""
    audio: np.ndarray  # what the receiver hears, 16 kHz mono float32
    nbytes: int  # size of the coded file on disk
    encode_s: float
    decode_s: float


class System(Protocol):
    name: str
    nominal_bps: float | None

    def code(self, audio: np.ndarray, workdir: Path, stem: str) -> Coded: ...


class ClariCodecSystem:
    """The codec as a user runs it: a real .cc file on disk, decoded from that file."""

    def __init__(self, codec, name: str = "decoded"):
        self.codec, self.name = codec, name
        self.nominal_bps = codec.mode.bit_rate

    def code(self, audio: np.ndarray, workdir: Path, stem: str) -> Coded:
        path = workdir / f"{stem}.cc"
        start = time.perf_counter()
        path.write_bytes(self.codec.encode(audio, RATE))
        middle = time.perf_counter()
        decoded, rate = self.codec.decode(path.read_bytes())
        end = time.perf_counter()
        assert rate == RATE
        return Coded(decoded, path.stat().st_size, middle - start, end - middle)


@dataclass
class Result:
    """One utterance: its reference and every system's transcript, size and timings."""
    id: str
    source: str
    seconds: float
    reference: str  # the transcript, or the ASR's transcript of the original
    reference_kind: str  # "transcript" | "asr"
    hyps: dict[str, str] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    encode_s: dict[str, float] = field(default_factory=dict)
    decode_s: dict[str, float] = field(default_factory=dict)


def run(rows: list[dict], systems: list[System], asr, options, workdir: Path,
        progress: Callable[[], None] | None = None, chunk: int = 8,
        skipped: list[str] | None = None) -> list[Result]:
    """Code and transcribe every row (id, path, text, source). Rows whose audio cannot be
    read are left out and named in `skipped` (when given) instead of stopping the run."""
    from .audio import AudioError, load_audio
    results = []
    for start in range(0, len(rows), chunk):
        batch, clips = [], []  # clips: [(result, system name, audio)]
        for row in rows[start:start + chunk]:
            try:
                audio = load_audio(row["path"], RATE)
                if len(audio) == 0:
                    raise AudioError("audio is empty")
            except AudioError as err:
                if skipped is None:
                    raise
                skipped.append(f"{row['id']}: {err}")
                if progress:
                    progress()
                continue
            result = Result(str(row["id"]), row.get("source") or "unknown", len(audio) / RATE,
                            row.get("text") or "", "transcript" if row.get("text") else "asr")
            clips.append((result, ORIGINAL, audio))
            stem = f"{start + len(batch):06d}"
            for system in systems:
                coded = system.code(audio, workdir, stem)
                result.bytes[system.name] = coded.nbytes
                result.encode_s[system.name] = coded.encode_s
                result.decode_s[system.name] = coded.decode_s
                clips.append((result, system.name, coded.audio))
            batch.append(result)
        # One ASR call for the whole chunk: the ASR batches clips of similar length.
        texts = asr.texts([audio for _, _, audio in clips], options) if clips else []
        for (result, name, _), text in zip(clips, texts):
            result.hyps[name] = text
        for result in batch:
            if result.reference_kind == "asr":
                result.reference = result.hyps[ORIGINAL]
            results.append(result)
            if progress:
                progress()
    return results


# --- scoring -----------------------------------------------------------------------------

def errors_of(results: list[Result], name: str) -> list[Errors]:
    return [count_errors(r.reference, r.hyps[name]) for r in results]


def paired_bootstrap(errors: np.ndarray, baseline: np.ndarray, ref_words: np.ndarray,
                     resamples: int = 1000, seed: int = 0) -> tuple[float | None, float | None]:
    """95 % interval of corpus WER(system) - WER(baseline), resampling utterances."""
    if len(errors) == 0 or not np.any(ref_words):
        return None, None  # no reference words, no WER (and JSON has no NaN)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(errors), size=(resamples, len(errors)))
    words = ref_words[idx].sum(axis=1).astype(float)
    words[words == 0] = np.nan  # a resample with no reference words has no WER
    diff = (errors[idx].sum(axis=1) - baseline[idx].sum(axis=1)) / words
    low, high = np.nanpercentile(diff, [2.5, 97.5])
    return float(low), float(high)


def wer_difference(system: list[Errors], baseline: list[Errors], resamples: int = 1000
                   ) -> tuple[float | None, float | None, float | None]:
    """Corpus WER(system) - WER(baseline) on the same utterances, with its paired
    bootstrap 95 % interval (fractions, not points); None where there are no reference words."""
    errors = np.array([e.word_errors for e in system])
    base = np.array([e.word_errors for e in baseline])
    words = np.array([e.ref_words for e in baseline])
    low, high = paired_bootstrap(errors, base, words, resamples)
    diff = (errors.sum() - base.sum()) / words.sum() if words.sum() else None
    return diff, low, high


def _group_summary(results: list[Result], names: list[str], per_utt: dict[str, list[Errors]],
                   nominal: dict[str, float | None], resamples: int) -> dict:
    seconds = sum(r.seconds for r in results)
    out = {"utterances": len(results), "seconds": round(seconds, 3),
           "asr_references": sum(r.reference_kind == "asr" for r in results), "systems": {}}
    for name in [ORIGINAL] + names:
        total = sum(per_utt[name], Errors())
        entry = {"wer": total.wer, "cer": total.cer, "word_errors": total.word_errors,
                 "ref_words": total.ref_words, "char_errors": total.char_errors,
                 "ref_chars": total.ref_chars}
        if name != ORIGINAL:
            nbytes = sum(r.bytes[name] for r in results)
            enc = sum(r.encode_s[name] for r in results)
            dec = sum(r.decode_s[name] for r in results)
            delta, low, high = wer_difference(per_utt[name], per_utt[ORIGINAL], resamples)
            entry |= {
                "delta_wer": delta,
                "delta_wer_ci95": [low, high],
                "bytes": nbytes,
                "nominal_bps": nominal.get(name),
                "bps": nbytes * 8 / seconds if seconds else None,  # headers included
                "encode_x_realtime": seconds / enc if enc else None,
                "decode_x_realtime": seconds / dec if dec else None,
            }
        out["systems"][name] = entry
    return out


def summarize(results: list[Result], names: list[str], nominal: dict[str, float | None] | None = None,
              resamples: int = 1000) -> dict:
    """Overall and per-source figures for the original and each named system."""
    nominal = nominal or {}
    groups = {"all": results}
    for source in sorted({r.source for r in results}):
        groups[source] = [r for r in results if r.source == source]
    summary = {}
    for group, members in groups.items():
        per_utt = {name: errors_of(members, name) for name in [ORIGINAL] + names}
        summary[group] = _group_summary(members, names, per_utt, nominal, resamples)
    return summary


# --- saved hypotheses ----------------------------------------------------------------------

def save_hyps(results: list[Result], path: Path) -> None:
    """One JSON object per utterance: enough to recompute every WER/CER in the report."""
    with open(path, "w") as f:
        for result in results:
            f.write(json.dumps(asdict(result), ensure_ascii=False) + "\n")


def load_hyps(path: Path) -> list[Result]:
    return [Result(**json.loads(line)) for line in Path(path).read_text().splitlines() if line.strip()]
