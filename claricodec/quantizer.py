"""The finite scalar quantiser, seen as a stochastic policy (DESIGN.md section 3).

Each of D latent dimensions is bounded to (-L/2, L/2) with tanh and split into L bins of
width 1; level k (0-based) is the bin centre k - (L - 1) / 2. For L = 4: bins
(-2,-1) [-1,0) [0,1) [1,2), levels -1.5 -0.5 0.5 1.5, and the rounding rule is
    level index = clamp(floor(z + L/2), 0, L - 1)     (a value on a boundary rounds up).
The frame index packs the per-dimension level indices, first dimension most significant:
    index = sum_d k_d * prod(L[d+1:])
The decoder sees levels scaled to [-1, 1]. As a policy, dimension d at each frame is a
categorical over its L levels with logits -(z - level)^2 / temperature; its argmax is the
rounding above, so inference is deterministic. The temperature is calibrated at the end
of stage 1 and then frozen (it only matters when sampling, i.e. in stage 2).
"""
from __future__ import annotations

import torch
from torch import nn


class FSQPolicy(nn.Module):
    def __init__(self, levels: tuple[int, ...] = (4, 4, 4, 4), temperature: float = 1.0):
        super().__init__()
        self.levels = tuple(levels)
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        radix = [1] * len(levels)
        for d in range(len(levels) - 2, -1, -1):
            radix[d] = radix[d + 1] * levels[d + 1]
        self.register_buffer("_radix", torch.tensor(radix).view(1, -1, 1), persistent=False)
        self.register_buffer("_levels", torch.tensor(levels).view(1, -1, 1), persistent=False)

    @property
    def dim(self) -> int:
        return len(self.levels)

    @property
    def codebook_size(self) -> int:
        return int(torch.prod(torch.tensor(self.levels)))

    def bound(self, h: torch.Tensor) -> torch.Tensor:
        """Encoder output [B, D, T] -> z in (-L/2, L/2) per dimension."""
        return torch.tanh(h) * (self._levels / 2)

    def level_values(self, k: torch.Tensor) -> torch.Tensor:
        """Level indices [B, D, T] -> level values (bin centres)."""
        return k.to(torch.float32) - (self._levels - 1) / 2

    def scaled(self, k: torch.Tensor) -> torch.Tensor:
        """Level indices -> decoder input in [-1, 1]."""
        return self.level_values(k) / ((self._levels - 1) / 2)

    def argmax(self, z: torch.Tensor) -> torch.Tensor:
        """The deterministic path: ordinary FSQ rounding (see module docstring)."""
        top = self._levels - 1
        return torch.minimum(torch.clamp(torch.floor(z + self._levels / 2), min=0), top).long()

    def straight_through(self, z: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Decoder input for levels k, with gradients passed to z as if it were that level."""
        value = z + (self.level_values(k) - z).detach()
        return value / ((self._levels - 1) / 2)

    def quantize_ste(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rounded, straight-through: (decoder input in [-1, 1], level indices)."""
        k = self.argmax(z)
        return self.straight_through(z, k), k

    def logits(self, z: torch.Tensor, temperature: float | torch.Tensor | None = None) -> torch.Tensor:
        """[B, D, T] -> [B, D, T, L], at the policy's temperature unless another is given.
        Assumes equal L for all dims (true for every mode)."""
        L = self.levels[0]
        centres = torch.arange(L, device=z.device, dtype=z.dtype) - (L - 1) / 2
        return -(z.unsqueeze(-1) - centres) ** 2 / (self.temperature if temperature is None else temperature)

    def distribution(self, z: torch.Tensor) -> torch.distributions.Categorical:
        return torch.distributions.Categorical(logits=self.logits(z))

    def sample(self, z: torch.Tensor, generator: torch.Generator | None = None,
               temperature: float | torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampled level indices [B, D, T] and their log-probability per frame [B, T], at the
        policy's temperature unless another is given."""
        probs = torch.softmax(self.logits(z, temperature), dim=-1)
        flat = probs.reshape(-1, probs.shape[-1])
        k = torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1])
        return k, self.log_prob(z, k, temperature)

    def log_prob(self, z: torch.Tensor, k: torch.Tensor,
                 temperature: float | torch.Tensor | None = None) -> torch.Tensor:
        logp = torch.log_softmax(self.logits(z, temperature), dim=-1)
        return logp.gather(-1, k.unsqueeze(-1)).squeeze(-1).sum(1)

    def to_index(self, k: torch.Tensor) -> torch.Tensor:
        """Level indices [B, D, T] -> frame indices [B, T]."""
        return (k * self._radix).sum(1)

    def from_index(self, index: torch.Tensor) -> torch.Tensor:
        """Frame indices [B, T] -> level indices [B, D, T]."""
        return (index.unsqueeze(1) // self._radix) % self._levels
