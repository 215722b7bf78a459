"""What an adversarial loss is (:class:`AdversarialLoss`) and how a discriminator's output reads as logits
(:func:`logits_of`): one tensor, a list of tensors (one per scale) or an object with ``logits``."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where the losses compute: the contract is imported at every CLI start
    import torch


def logits_of(output: Any) -> list[torch.Tensor]:
    """The logits of a discriminator output, as a list with one tensor per scale."""
    import torch

    output = getattr(output, "logits", output)
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Sequence) and output and all(isinstance(t, torch.Tensor) for t in output):
        return list(output)
    raise TypeError(
        f"discriminator output must be a tensor, a list of tensors or have .logits, not {type(output).__name__}"
    )


class AdversarialLoss(abc.ABC):
    """A GAN objective: ``d_loss`` for the discriminator step, ``g_loss`` for the generator step.

    Subclasses define the per-scale terms ``_d`` and ``_g`` on logit tensors.

    The collapse watchdog (``train.on_collapse``) reads two levels, where a loss has them (contract
    version 9): ``collapse_floor``, the D loss at or under which D has all but won (its generator then learns
    nothing; None for losses that sit near their floor legitimately, as hinge losses do), and
    ``explosion_level``, the G loss above which G's samples are all but certainly told apart (None: no level),
    and ``chance_level``, D's loss when it gives reals and fakes the same output at its point of indifference
    (a D whose loss stays there tells nothing apart: dead, or diverged to a constant).
    """

    collapse_floor: float | None = None
    explosion_level: float | None = None
    chance_level: float | None = None

    def d_loss(self, real: Any, fake: Any) -> torch.Tensor:
        """Discriminator loss from its outputs on a real and a generated batch."""
        pairs = list(zip(logits_of(real), logits_of(fake), strict=True))
        return sum(self._d(r, f) for r, f in pairs) / len(pairs)

    def g_loss(self, fake: Any) -> torch.Tensor:
        """Generator loss from the discriminator's output on a generated batch."""
        scales = logits_of(fake)
        return sum(self._g(f) for f in scales) / len(scales)

    @abc.abstractmethod
    def _d(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Discriminator loss on one scale's logits."""

    @abc.abstractmethod
    def _g(self, fake: torch.Tensor) -> torch.Tensor:
        """Generator loss on one scale's logits."""
