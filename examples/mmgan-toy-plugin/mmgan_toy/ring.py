"""The ``ring2d`` modality: 2-D points drawn from Gaussians on a ring, the classic GAN toy.

Eight modes on a circle of radius 2 with standard deviation 0.02 (as in Metz et al. 2016, "Unrolled
GANs"): a collapsed generator covers a few modes and the scatter plot shows it at a glance. The modality
is declared here, once, as a ``ModalityPlugin`` like the built-in image plugin; its networks are in
``ring_networks`` and its data in ``ring_data``.

mmgan imports this module whenever its CLI starts (``mmgan --help`` and ``mmgan plugins`` included), so
it imports torch, the networks, the data and PIL inside the functions that use them: the CLI then starts
in a fraction of a second instead of the seconds torch takes to import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmgan.errors import DataError
from mmgan.files import atomic_path
from mmgan.modality import Modality, ModalityConfig
from mmgan.modality_plugin import ModalityPlugin

if TYPE_CHECKING:
    import torch
    from torch import nn

    from mmgan.report.section import ReportContext, ReportSection
    from mmgan_toy.ring_data import RingDataset

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


def open_ring_source(source: str, config: RingConfig, seed: int) -> RingDataset:
    """``builtin:ring<K>``: K Gaussian modes on a ring, with the radius and spread from ``config``."""
    match = re.fullmatch(r"builtin:ring(\d+)", source)
    if match is None or int(match.group(1)) < 1:
        raise DataError(f"unknown built-in ring2d source {source!r}; valid: builtin:ring<K>, e.g. builtin:ring8")
    from mmgan_toy.ring_data import RingDataset

    return RingDataset(int(match.group(1)), config.radius, config.std, config.num_points, seed)


# --- samples ---------------------------------------------------------------------------------------------


def save_scatter(samples: torch.Tensor, path: str | Path, extent: float, real: torch.Tensor | None = None,
                 size: int = 256) -> Path:
    """Plot points (N, 2) in [-extent, extent]^2 as a PNG: generated in blue over real in grey.

    Points outside the frame are pinned to its border and NaN points are left out, so a diverged
    generator still gives a picture.
    """
    import torch
    from PIL import Image, ImageDraw

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
    import torch

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
        from mmgan_toy.ring_networks import RingHead, RingStem

        return RingStem(config.nz, width, config.tokens, config.hidden), RingHead(width, config.tokens, config.hidden)

    def build_discriminator(self, config: RingConfig) -> nn.Module:
        from mmgan_toy.ring_networks import RingDiscriminator

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

    def report_section(self, ctx: ReportContext) -> ReportSection | None:
        """``mmgan report``: the scatter plot of every sample step on a slider, the best and last first."""
        from mmgan.report.section import ReportSection

        plots = ctx.sample_files(".png")
        if not plots:
            return None
        return ReportSection.picture_per_step("ring2d: generated points (blue) over real ones (grey)", plots,
                                              ctx.best_step, text="A collapsed generator covers only some modes.")


# the object the ``ring2d`` entry point names (``mmgan_toy.ring:plugin``)
plugin = RingPlugin()
