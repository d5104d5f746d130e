"""Reading and writing audio: any format soundfile reads, any rate, any channel count."""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au", ".caf", ".w64"}
MAX_CHANNELS = 64  # more, with fewer samples than channels: a transposed array


class AudioError(ValueError):
    """Input audio that cannot be used. Message is one line."""


def to_mono(audio: np.ndarray) -> np.ndarray:
    """[samples] or [samples, channels] -> [samples], averaging the channels."""
    audio = np.asarray(audio)
    if audio.dtype.kind in "iu":  # integer PCM (e.g. sf.read(dtype="int16")): scale to +-1
        half = float(2 ** (np.iinfo(audio.dtype).bits - 1))
        audio = (audio.astype(np.float64) - (half if audio.dtype.kind == "u" else 0.0)) / half
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        if audio.shape[1] == 0:
            raise AudioError(f"audio has no channels (shape {audio.shape})")
        if audio.shape[1] > MAX_CHANNELS and audio.shape[1] > audio.shape[0]:
            raise AudioError(f"audio of shape {audio.shape} looks like [channels, samples]; "
                             f"pass [samples, channels] (transpose it)")
        audio = audio.mean(axis=1)
    elif audio.ndim != 1:
        raise AudioError(f"audio must be 1-D or [samples, channels], got shape {audio.shape}")
    return audio


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return audio.astype(np.float32, copy=False)
    return soxr.resample(audio, rate_in, rate_out, quality="HQ").astype(np.float32)


def prepare(audio: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """Downmix, sanitise and resample to the codec's rate."""
    if not isinstance(sample_rate, (int, float, np.integer, np.floating)) or not sample_rate > 0:
        raise AudioError(f"invalid sample rate {sample_rate!r}")
    audio = to_mono(audio)
    if not np.all(np.isfinite(audio)):
        raise AudioError("audio contains NaN or infinite samples")
    return resample(audio, sample_rate, target_rate)


def pcm16(audio: np.ndarray) -> np.ndarray:
    """Float samples as 16-bit PCM (clipped, rounded): decoded files, the training cache,
    Codec2's input."""
    return np.clip(np.round(np.asarray(audio) * 32767), -32768, 32767).astype("<i2")


def load_audio(source: str | Path | BinaryIO | bytes, target_rate: int) -> np.ndarray:
    """Read audio from a path, file object or bytes; return mono float32 at target_rate."""
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        audio, rate = sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(f"cannot read audio: {libsndfile_message(err)}") from None
    return prepare(audio, rate, target_rate)


def libsndfile_message(err: Exception) -> str:
    """First line, without libsndfile's "Error opening '<path>': " (the caller names the
    file, and for stdin the path is a temporary one)."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return re.sub(r"^Error opening .*?: ", "", text)
