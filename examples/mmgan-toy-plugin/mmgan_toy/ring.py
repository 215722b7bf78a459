"""The ``ring2d`` modality: 2-D points drawn from Gaussians on a ring, the classic GAN toy.

Eight modes on a circle of radius 2 with standard deviation 0.02 (as in Metz et al. 2016, "Unrolled
GANs"): a collapsed generator covers a few modes and the scatter plot shows it at a glance. Everything
a modality needs is here, declared once as a ``ModalityPlugin`` like the built-in image plugin.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torch import nn

from mmgan.errors import DataError
from mmgan.files import atomic_path
from mmgan.modality import Modality, ModalityConfig
from mmgan.modality_plugin import ModalityPlugin

NAME = "ring2d"


@dataclass
class RingConfig(ModalityConfig):
    """Data (``builtin:ring<K>``, K modes) and the sizes of the small MLPs."""

    data: str = "builtin:ring8"
    nz: int = 8
    tokens: int = 4
    hidden: int = 128
    radius: float = 2.0
    std: float = 0.02
    num_points: int = 8192

    def validate(self) -> None:
        for name in ("nz", "tokens", "hidden", "num_points"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not (self.radius > 0 and self.std >= 0):
            raise ValueError(f"radius must be positive and std >= 0, got {self.radius} and {self.std}")


# --- data ------------------------------------------------------------------------------------------------


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


def open_ring_source(source: str, config: RingConfig, seed: int) -> RingDataset:
    """``builtin:ring<K>``: K Gaussian modes on a ring, with the radius and spread from ``config``."""
    match = re.fullmatch(r"builtin:ring(\d+)", source)
    if match is None or int(match.group(1)) < 1:
        raise DataError(f"unknown built-in ring2d source {source!r}; valid: builtin:ring<K>, e.g. builtin:ring8")
    return RingDataset(int(match.group(1)), config.radius, config.std, config.num_points, seed)


# --- networks --------------------------------------------------------------------------------------------


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


# --- samples ---------------------------------------------------------------------------------------------


def save_scatter(samples: torch.Tensor, path: str | Path, extent: float, real: torch.Tensor | None = None,
                 size: int = 256) -> Path:
    """Plot points (N, 2) in [-extent, extent]^2 as a PNG: generated in blue over real in grey.

    Points outside the frame are pinned to its border and NaN points are left out, so a diverged
    generator still gives a picture.
    """
    if samples.dim() != 2 or samples.shape[1] != 2:
        raise ValueError(f"save_scatter expects points of shape (N, 2), got {tuple(samples.shape)}")
    picture = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(picture)
    middle = (size - 1) / 2
    draw.line([(0, middle), (size - 1, middle)], fill=(225, 225, 225))
    draw.line([(middle, 0), (middle, size - 1)], fill=(225, 225, 225))
    layers = [] if real is None else [(real, 1, (170, 170, 170))]
    for points, dot, colour in [*layers, (samples, 2, (31, 119, 180))]:
        points = points.detach().to("cpu", torch.float32)
        points = points[torch.isfinite(points).all(dim=1)]
        # pixel rows grow downward, y grows upward
        px = ((points / extent).clamp(-1, 1) + 1) * (size - 1) / 2
        for x, y in zip(px[:, 0].tolist(), ((size - 1) - px[:, 1]).tolist(), strict=True):
            draw.ellipse([x - dot, y - dot, x + dot, y + dot], fill=colour)
    target = Path(path)
    with atomic_path(target) as tmp:
        picture.save(tmp, format="PNG")  # the temporary name has no suffix to infer the format from
    return target


# --- hooks -----------------------------------------------------------------------------------------------


def noise(n: int, config: RingConfig, generator: torch.Generator) -> torch.Tensor:
    """z ~ N(0, I) of shape (n, nz)."""
    return torch.randn(n, config.nz, generator=generator)


def noise_for_batch(real: torch.Tensor, config: RingConfig, generator: torch.Generator) -> torch.Tensor:
    return noise(real.shape[0], config, generator)


class RingPlugin(ModalityPlugin):
    """``ring2d`` declared once: each method answers its hook for this modality only."""

    modality = Modality(
        name=NAME,
        config_class=RingConfig,
        make_input=noise_for_batch,
        sample_input=noise,
        description="toy: 2-D points on a ring of Gaussian modes",
        train_defaults={"steps": 3000},
    )

    def build_generator(self, config: RingConfig, width: int) -> tuple[nn.Module, nn.Module]:
        return RingStem(config.nz, width, config.tokens, config.hidden), RingHead(width, config.tokens, config.hidden)

    def build_discriminator(self, config: RingConfig) -> nn.Module:
        return RingDiscriminator(config.hidden)

    def read_data(self, source: str, config: RingConfig, seed: int) -> torch.utils.data.Dataset | None:
        # a path is left to other plugins: one could add a CSV reader for ring2d without touching this one
        if not source.startswith("builtin:"):
            return None
        return open_ring_source(source, config, seed)

    def write_samples(self, samples: torch.Tensor, path: Path, config: RingConfig,
                      real: torch.Tensor | None) -> list[Path]:
        path = Path(path)
        extent = 1.5 * config.radius
        return [save_scatter(samples, path if path.suffix else path.with_suffix(".png"), extent, real)]


# the object the ``ring2d`` entry point names (``mmgan_toy.ring:plugin``)
plugin = RingPlugin()
