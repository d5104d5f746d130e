"""Decoder: codes at 25 Hz -> ConvNeXt -> x4 upsample -> ConvNeXt at 100 Hz -> iSTFT head."""
from __future__ import annotations

import torch
from torch import nn

from .layers import ChannelNorm, blocks


class ISTFTHead(nn.Module):
    """Predicts log-magnitude and phase per STFT bin, then inverts (Vocos style)."""

    def __init__(self, dim: int, n_fft: int = 640, hop: int = 160):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.proj = nn.Linear(dim, n_fft + 2)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, F] -> [B, F * hop]."""
        x = self.proj(x.transpose(1, 2)).transpose(1, 2)
        log_mag, phase = x.float().chunk(2, dim=1)
        mag = torch.exp(log_mag).clamp(max=100.0)
        spec = torch.polar(mag, phase)
        return torch.istft(spec, self.n_fft, self.hop, window=self.window, center=True,
                           length=x.shape[-1] * self.hop)


class Decoder(nn.Module):
    def __init__(self, latent_dim: int = 4, dim: int = 256, depths: tuple[int, int] = (2, 6)):
        super().__init__()
        self.inp = nn.Sequential(nn.Conv1d(latent_dim, dim, 1), ChannelNorm(dim))
        self.stage25 = blocks(dim, depths[0])
        self.up = nn.ConvTranspose1d(dim, dim, 8, stride=4, padding=2)  # exactly 4x frames
        self.stage100 = blocks(dim, depths[1])
        self.norm = ChannelNorm(dim)
        self.head = ISTFTHead(dim)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Scaled codes [B, D, T] in [-1, 1] -> audio [B, T * 640]."""
        x = self.stage25(self.inp(codes))
        x = self.stage100(self.up(x))
        return self.head(self.norm(x))
