"""What a training step works with: the run's networks, optimisers, losses and settings (:class:`StepParts`,
built once by the Trainer) and one step's batch (:class:`Batch`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy
import torch
from accelerate import Accelerator
from torch import nn

from mmgan.contract.modality import Modality
from mmgan.losses import AdversarialLoss


@dataclass
class StepParts:
    """What one step needs: the (wrapped) networks and optimizers, the losses, the noise source."""

    accelerator: Accelerator
    pm: pluggy.PluginManager
    modalities: dict[str, Modality]
    configs: Mapping[str, Any]
    adversarial: dict[str, AdversarialLoss]
    G: nn.Module
    D: nn.Module
    D_module: nn.Module  # D's parameters without a DDP wrapper
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    noise: torch.Generator
    seed: int = 0
    plugin_configs: Mapping[str, Any] | None = None
    steps: int = 0  # the run's train.steps: the loop's length
    schedules: bool = False  # whether the optimizers have per-modality groups to set each step
    # each modality's own steps (<modality>.steps, at most train.steps): its schedule's horizon; past it
    # the modality takes no part (missing: train.steps)
    modality_steps: dict[str, int] = field(default_factory=dict)
    trunk_users: list[str] = field(default_factory=list)  # the modalities that go through the trunk
    trunk_gradients: str = "sum"  # how the modalities' gradients on shared trunk blocks combine (conflict.py)


@dataclass
class Batch:
    """One step's data: each modality's real batch and generator input, which modalities still train
    (``live``) and which run at all (``present``: under DDP every modality runs, weighted zero when it
    does not train, since every parameter must be in the graph)."""

    reals: dict[str, torch.Tensor]
    inputs: dict[str, torch.Tensor]
    live: list[str]
    present: list[str]
    ranked: bool  # several processes (DDP)


def training(parts: StepParts, name: str, step: int) -> bool:
    """Whether modality ``name`` still trains at ``step`` (0-based): below its own steps."""
    return step < parts.modality_steps.get(name, parts.steps)
