"""``moments``: a moment-matching generator loss term for every modality, weighted by ``[moments] weight``.

mmgan imports this module whenever its CLI starts (``mmgan --help`` included): keep its imports light.
torch appears here only in annotations; import it, and any module that imports it, inside the hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mmgan.api import LossContext, hookimpl

if TYPE_CHECKING:
    import torch

NAME = "moments"


@dataclass
class TermConfig:
    """The ``[moments]`` section of every run's config while this plugin is installed."""

    # the term's weight (0: off)
    weight: float = 0.1

    def validate(self) -> None:
        if not self.weight >= 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")


def moment_distance(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Squared distance of the batches' per-feature means plus that of their standard deviations."""
    real, fake = real.flatten(1).float(), fake.flatten(1).float()
    return (real.mean(0) - fake.mean(0)).square().mean() + (real.std(0) - fake.std(0)).square().mean()


@hookimpl
def mmgan_register_config(register: Callable[[str, type], None]) -> None:
    register(NAME, TermConfig)


@hookimpl
def mmgan_generator_loss_terms(ctx: LossContext) -> dict[str, torch.Tensor] | None:
    weight = ctx.settings(NAME).weight
    if weight == 0:
        return None
    return {NAME: weight * moment_distance(ctx.real, ctx.fake)}
