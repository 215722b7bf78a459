"""Adversarial losses (non-saturating, hinge, least squares), registered as a plugin of core.

A loss takes discriminator logits. A discriminator may return one tensor, a list of tensors (one per
scale, as MelGAN's) or an object with a ``logits`` attribute; each scale's loss is averaged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

# torch is imported inside the functions that compute: this module is core's loss plugin, registered
# whenever the plugin manager is built (every CLI start, `mmgan --help` included)
if TYPE_CHECKING:
    import torch

from mmgan.contract.adversarial import AdversarialLoss, logits_of
from mmgan.contract.contexts import DiscriminatorInactive, LossContext

hookimpl = pluggy.HookimplMarker("mmgan")

__all__ = ["AdversarialLoss", "DiscriminatorInactive", "HingeLoss", "LeastSquaresLoss", "LossContext",
           "NonSaturatingLoss", "logits_of", "mmgan_register_losses", "r1_penalty"]


def r1_penalty(discriminator: Callable[[torch.Tensor], Any], real: torch.Tensor) -> torch.Tensor:
    """``E ||grad_x D(x)||^2`` over a batch of real samples (Mescheder et al. 2018's R1 without its
    ``gamma / 2``), with the graph kept so that it trains the discriminator; every scale's logits count."""
    import torch

    real = real.detach().requires_grad_(True)
    score = sum(logits.float().sum() for logits in logits_of(discriminator(real)))
    (grad,) = torch.autograd.grad(score, real, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


class NonSaturatingLoss(AdversarialLoss):
    """Goodfellow et al. 2014: D maximises log D(x) + log(1 - D(G(z))); G maximises log D(G(z)).

    Collapse levels: D's loss at 0.01 means D gives reals and fakes the right side at about 99.5%
    each (the image default's D sits at 0.04-0.13, window medians of 3 runs; docs/benchmarks.md); G's loss
    at 6 means D gives its samples a chance of 0.25% of being real."""

    collapse_floor = 0.01
    explosion_level = 6.0
    chance_level = 2 * math.log(2)

    def _d(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        # softplus(-x) == -log(sigmoid(x)), stable for large |x|
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def _g(self, fake: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.softplus(-fake).mean()


class HingeLoss(AdversarialLoss):
    """Lim & Ye 2017, as in SAGAN and BigGAN. D's loss sits near 0 legitimately (no floor); at 2 it tells
    nothing apart."""

    chance_level = 2.0

    def _d(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()

    def _g(self, fake: torch.Tensor) -> torch.Tensor:
        return -fake.mean()


class LeastSquaresLoss(AdversarialLoss):
    """Mao et al. 2017 with targets 1 (real) and 0 (fake), as MelGAN/HiFi-GAN use.

    Collapse levels: D's loss at 0.02 (logits within 0.1 of their targets); G's loss at 0.9 (D's output
    on fakes within 0.05 of the fake target)."""

    collapse_floor = 0.02
    explosion_level = 0.9
    chance_level = 0.5

    def _d(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return ((real - 1) ** 2).mean() + (fake**2).mean()

    def _g(self, fake: torch.Tensor) -> torch.Tensor:
        return ((fake - 1) ** 2).mean()


@hookimpl
def mmgan_register_losses(register: Callable[[str, AdversarialLoss], None]) -> None:
    register("nonsaturating", NonSaturatingLoss())
    register("hinge", HingeLoss())
    register("lsgan", LeastSquaresLoss())
