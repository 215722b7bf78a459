"""The ``ring2d`` networks: MLPs from noise to the shared trunk's tokens, from tokens to points, and
from points to logits. Imported by ``mmgan_toy.ring`` when a run builds them (this module imports torch)."""

from __future__ import annotations

import torch
from torch import nn


class RingStem(nn.Module):
    """z (B, nz) -> MLP -> tokens (B, width, T) for the shared trunk."""

    def __init__(self, nz: int, width: int, tokens: int, hidden: int) -> None:
        super().__init__()
        self.width, self.tokens = width, tokens
        self.net = nn.Sequential(nn.Linear(nz, hidden), nn.ReLU(), nn.Linear(hidden, width * tokens))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], self.width, self.tokens)


class RingHead(nn.Module):
    """Tokens (B, width, T) -> MLP -> points (B, 2); no output squashing, the ring has radius 2."""

    def __init__(self, width: int, tokens: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(width * tokens, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens)


class RingDiscriminator(nn.Module):
    """Points (B, 2) -> MLP -> one logit per point, shape (B,)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1),
        )

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.net(points).flatten()
