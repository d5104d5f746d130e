"""Encoder: 16 kHz audio -> log-mel at 100 Hz -> ConvNeXt stages -> 25 Hz latent (D dims)."""
from __future__ import annotations

import torch
from torch import nn

from .layers import ChannelNorm, blocks
from .mel import LogMel


class Encoder(nn.Module):
    def __init__(self, dim: int = 192, latent_dim: int = 4, n_mels: int = 80,
                 depths: tuple[int, int, int] = (2, 2, 4), sample_rate: int = 16000):
        super().__init__()
        self.mel = LogMel(sample_rate, n_fft=640, hop=160, n_mels=n_mels)
        self.stem = nn.Sequential(nn.Conv1d(n_mels, dim, 7, padding=3), ChannelNorm(dim))
        # Two stride-2 convolutions take 100 Hz mel frames down to 25 Hz codec frames.
        self.stage100 = blocks(dim, depths[0])
        self.down50 = nn.Conv1d(dim, dim, 4, stride=2, padding=1)
        self.stage50 = blocks(dim, depths[1])
        self.down25 = nn.Conv1d(dim, dim, 4, stride=2, padding=1)
        self.stage25 = blocks(dim, depths[2])
        self.out = nn.Sequential(ChannelNorm(dim), nn.Conv1d(dim, latent_dim, 1))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, S] with S a multiple of 640 -> unbounded latent [B, D, S // 640]."""
        x = self.mel(audio)[..., :-1]  # center=True gives one extra frame
        x = self.stage100(self.stem(x))
        x = self.stage50(self.down50(x))
        x = self.stage25(self.down25(x))
        return self.out(x)
