"""Building blocks shared by encoder and decoder."""
from __future__ import annotations

import torch
from torch import nn


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block on [batch, channels, time] (as in Vocos).

    No ConvNeXtV2 global response norm: it pools over the whole sequence, which would make
    each frame depend on the entire file and break chunked (streaming) processing.
    """

    def __init__(self, dim: int, hidden: int, kernel: int = 7, layer_scale: float = 1 / 8):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).transpose(1, 2)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of [batch, channels, time]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def blocks(dim: int, count: int, hidden_mult: int = 3) -> nn.Sequential:
    return nn.Sequential(*[ConvNeXtBlock(dim, dim * hidden_mult) for _ in range(count)])
