"""Learning-rate schedules per modality (``<modality>.lr_schedule``), as pure functions of the step.

A schedule multiplies a parameter group's base learning rate (``train.lr_g`` / ``train.lr_d``, times
``trunk.lr_scale`` for the trunk) by ``multiplier(step)``:

- a linear warm-up from 0 to 1 over ``lr_warmup`` steps, then
- ``constant``: 1; ``cosine``: half a cosine from 1 down to ``lr_floor`` at the modality's last step
  (``<modality>.steps``, else ``train.steps``); ``exponential``: geometric from 1 down to ``lr_floor``
  (> 0) at that step.

Being a function of the step and the config, a schedule needs no state of its own: resume is exact.
The horizon is ``train.steps``: resuming with a larger ``--steps`` re-draws the rest of the curve for
the new horizon (a cosine's learning rate jumps up to where the longer curve is at that step).
The shared trunk follows the largest multiplier among the modalities that go through it, so a
modality still at its full learning rate keeps training the trunk at full rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

SCHEDULES = ("constant", "cosine", "exponential")
GROUP_KEY = "mmgan_group"  # in a param group: "all", "trunk" or a modality name


def check_schedule(name: str, config: Any) -> None:
    """A ValueError naming the key for a schedule that cannot be drawn."""
    if config.lr_schedule not in SCHEDULES:
        raise ValueError(f"{name}.lr_schedule must be one of {', '.join(SCHEDULES)}, got {config.lr_schedule!r}")
    if config.lr_warmup < 0:
        raise ValueError(f"{name}.lr_warmup must be >= 0, got {config.lr_warmup}")
    if not 0 <= config.lr_floor <= 1:
        raise ValueError(f"{name}.lr_floor must be in [0, 1], got {config.lr_floor}")
    if config.lr_schedule == "exponential" and config.lr_floor <= 0:
        raise ValueError(f"{name}.lr_floor must be > 0 for an exponential schedule, got {config.lr_floor}")
    if config.adversarial_start < 0:
        raise ValueError(f"{name}.adversarial_start must be >= 0, got {config.adversarial_start}")


def multiplier(config: Any, step: int, steps: int) -> float:
    """The learning-rate factor of a modality at ``step`` (0-based: the step about to be taken)."""
    warm = config.lr_warmup
    if warm and step < warm:
        return (step + 1) / warm
    if config.lr_schedule == "constant":
        return 1.0
    progress = min(max(step - warm, 0) / max(steps - warm, 1), 1.0)
    floor = config.lr_floor
    if config.lr_schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return floor**progress  # exponential


def scheduled(configs: Mapping[str, Any]) -> bool:
    """Whether any modality has a schedule other than a constant rate without warm-up."""
    return any(c.lr_schedule != "constant" or c.lr_warmup for c in configs.values())


def apply(optimizer: torch.optim.Optimizer, configs: Mapping[str, Any], step: int, steps: int | Mapping[str, int],
          trunk_users: list[str]) -> None:
    """Set every group's learning rate for ``step`` from its base rate and its modality's schedule.

    ``steps`` is the horizon: ``train.steps``, or each modality's own steps (``<modality>.steps``); a
    modality past its last step has a factor of 0, so its groups no longer move (Adam at a learning rate
    of 0) and the trunk follows the modalities still training.
    """
    horizon = steps if isinstance(steps, Mapping) else dict.fromkeys(configs, steps)
    factors = {name: multiplier(c, step, horizon[name]) if step < horizon[name] else 0.0
               for name, c in configs.items()}
    for group in optimizer.param_groups:
        owner = group.get(GROUP_KEY)
        if owner is None or "base_lr" not in group:
            continue
        if owner in factors:
            factor = factors[owner]
        else:  # "trunk" or "all": the largest factor among the modalities that use it
            users = trunk_users if owner == "trunk" else list(factors)
            factor = max((factors[u] for u in users), default=1.0)
        group["lr"] = group["base_lr"] * factor
