"""Reconstruction and adversarial losses for stage 1."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..mel import LogMel

# (n_fft, hop, n_mels) at 16 kHz: short windows for timing, long ones for pitch.
MEL_SCALES = ((256, 64, 40), (512, 128, 80), (1024, 256, 80), (2048, 512, 128))
STFT_SCALES = ((512, 128), (1024, 256), (2048, 512))


class MultiScaleMelLoss(nn.Module):
    def __init__(self, sample_rate: int = 16000):
        super().__init__()
        self.mels = nn.ModuleList(LogMel(sample_rate, n, h, m) for n, h, m in MEL_SCALES)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return sum(F.l1_loss(mel(fake), mel(real)) for mel in self.mels) / len(self.mels)


class MultiResolutionSTFTLoss(nn.Module):
    """Log-magnitude L1 plus spectral convergence, averaged over resolutions."""

    def __init__(self):
        super().__init__()
        for n, _ in STFT_SCALES:
            self.register_buffer(f"window{n}", torch.hann_window(n), persistent=False)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for n, hop in STFT_SCALES:
            window = getattr(self, f"window{n}")
            f = torch.stft(fake, n, hop, window=window, return_complex=True).abs() + 1e-5
            r = torch.stft(real, n, hop, window=window, return_complex=True).abs() + 1e-5
            convergence = torch.linalg.norm(r - f) / torch.linalg.norm(r)
            total = total + convergence + F.l1_loss(f.log(), r.log())
        return total / len(STFT_SCALES)


def generator_adversarial_loss(fake_scores: list[torch.Tensor]) -> torch.Tensor:
    """Least-squares GAN, generator side."""
    return sum(torch.mean((1 - s) ** 2) for s in fake_scores) / len(fake_scores)


def discriminator_loss(real_scores, fake_scores) -> torch.Tensor:
    return sum(torch.mean((1 - r) ** 2) + torch.mean(f ** 2)
               for r, f in zip(real_scores, fake_scores)) / len(real_scores)


def feature_matching_loss(real_features, fake_features) -> torch.Tensor:
    losses = [F.l1_loss(f, r.detach()) for rs, fs in zip(real_features, fake_features)
              for r, f in zip(rs, fs)]
    return sum(losses) / len(losses)
