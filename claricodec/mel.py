"""Log-mel spectrograms in torch (there is no CPU torchaudio): HTK mel filterbank."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0,
                   f_max: float | None = None) -> np.ndarray:
    """Triangular filters on the HTK mel scale, [n_mels, n_fft // 2 + 1], area-normalised."""
    f_max = f_max or sample_rate / 2
    to_mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    to_hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    edges = to_hz(np.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2))
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    filters = np.maximum(0.0, np.minimum(rising, falling))
    return (filters * (2.0 / (upper - lower))).astype(np.float32)


class LogMel(nn.Module):
    """[batch, samples] -> [batch, n_mels, frames], natural-log magnitude mel.

    center=True pads n_fft // 2 on each side, so frames = samples // hop + 1; callers that
    need exactly samples // hop frames drop the last one.
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 640, hop: int = 160,
                 n_mels: int = 80, power: float = 1.0):
        super().__init__()
        self.n_fft, self.hop, self.power = n_fft, hop, power
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("filters", torch.from_numpy(
            mel_filterbank(sample_rate, n_fft, n_mels)), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(audio, self.n_fft, self.hop, window=self.window, center=True,
                          pad_mode="constant", return_complex=True).abs()
        if self.power != 1.0:
            spec = spec ** self.power
        return torch.log(torch.clamp(self.filters @ spec, min=1e-5))
