"""Slim discriminators (~0.33M parameters together): multi-period and multi-resolution STFT.

DESIGN.md section 4 measured full HiFi-GAN-size discriminators at ~4x the step time of
slim ones on this CPU; these are the slim kind.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, channels: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        self.period = period
        layers, c_in = [], 1
        for c in channels:
            layers.append(weight_norm(nn.Conv2d(c_in, c, (5, 1), (3, 1), padding=(2, 0))))
            c_in = c
        self.convs = nn.ModuleList(layers)
        self.post = weight_norm(nn.Conv2d(c_in, 1, (3, 1), padding=(1, 0)))

    def forward(self, audio: torch.Tensor):
        b, t = audio.shape
        pad = (-t) % self.period
        x = F.pad(audio, (0, pad), mode="reflect").view(b, 1, -1, self.period)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            features.append(x)
        x = self.post(x)
        features.append(x)
        return x.flatten(1), features


class SpectrogramDiscriminator(nn.Module):
    def __init__(self, n_fft: int, channels: int = 16):  # 32 took 3x the time on this CPU
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(1, channels, (3, 9), padding=(1, 4))),
            weight_norm(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))),
        ])
        self.post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, audio: torch.Tensor):
        spec = torch.stft(audio, self.n_fft, self.n_fft // 4, window=self.window,
                          return_complex=True).abs()
        x = torch.log1p(spec).unsqueeze(1).transpose(2, 3)  # [B, 1, time, freq]
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            features.append(x)
        x = self.post(x)
        features.append(x)
        return x.flatten(1), features


class Discriminators(nn.Module):
    def __init__(self, periods=(2, 3, 5, 7, 11), ffts=(512, 1024, 2048)):
        super().__init__()
        self.members = nn.ModuleList([PeriodDiscriminator(p) for p in periods] +
                                     [SpectrogramDiscriminator(n) for n in ffts])

    def forward(self, audio: torch.Tensor):
        scores, features = [], []
        for member in self.members:
            s, f = member(audio)
            scores.append(s)
            features.append(f)
        return scores, features
