"""The ``ring2d`` built-in data: points drawn from Gaussian modes on a circle. Imported by
``mmgan_toy.ring`` when a run reads ``builtin:ring<K>`` (this module imports torch)."""

from __future__ import annotations

import math

import torch


class RingDataset(torch.utils.data.Dataset):
    """``length`` points, each a (2,) float tensor near one of ``modes`` centres; a function of ``seed``."""

    def __init__(self, modes: int, radius: float, std: float, length: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(modes, (length,), generator=gen)
        self.centres = mode_centres(modes, radius)
        self.points = self.centres[self.labels] + std * torch.randn(length, 2, generator=gen)

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.points[index]


def mode_centres(modes: int, radius: float) -> torch.Tensor:
    """The (modes, 2) centres, evenly spaced on the circle, the first on the positive x axis."""
    angles = torch.arange(modes, dtype=torch.float64) * (2 * math.pi / modes)
    return (radius * torch.stack([angles.cos(), angles.sin()], dim=1)).float()
