"""One training step over every modality at once: update D, then update G, as pytorch/examples' DCGAN does.

    batch = draw_batch(...)            real samples and generator inputs; learning rates of this step
    fakes = G(inputs)                  generated once, reused by both updates
    update D                           real vs detached fakes -> D loss (+ plugins' terms) -> one D step
    update G                           D frozen; fakes -> G loss (+ plugins' terms) -> one G step

The loss of each half is :func:`mmgan.engine.objective.half_step_loss` (adversarial loss past a modality's
warm-up plus every plugin's terms, summed over modalities). DDP's padding (every parameter in the graph)
is :func:`pad_for_ddp`; the shared trunk's gradient combination is :func:`mmgan.engine.conflict.combined_update`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from accelerate import Accelerator

from mmgan.config import schedule
from mmgan.engine.conflict import combined_update, shared_trunk_parameters
from mmgan.engine.objective import adversarial, half_step_loss
from mmgan.engine.parts import Batch, StepParts, training

__all__ = ["Batch", "StepParts", "mean_over_processes", "train_step"]


def train_step(parts: StepParts, step: int, batches: dict[str, Iterator[Any]]) -> dict[str, torch.Tensor]:
    """One D update and one G update over all modalities; returns the detached losses by name.

    G and D each run once through their (DDP-)wrapped module per step, on every modality at once, so
    every parameter takes part in each backward. Extra calls (loss-term hooks, the G step's D) use the
    unwrapped modules: their gradients still reach the same parameters and are reduced with the rest.
    """
    batch = draw_batch(parts, step, batches)
    parts.accelerator.unwrap_model(parts.G).at_training_step(step)
    fakes = parts.G(batch.inputs)
    losses = update_discriminator(parts, step, batch, fakes)
    losses.update(update_generator(parts, step, batch, fakes))
    return losses


def draw_batch(parts: StepParts, step: int, batches: dict[str, Iterator[Any]]) -> Batch:
    """Each modality's real batch and generator input (noise from the run's RNG), and this step's learning
    rates (per-modality schedules)."""
    ranked = parts.accelerator.num_processes > 1
    live = [name for name in parts.modalities if training(parts, name, step)]
    # a modality past its own steps takes no part; under DDP it still runs, weighted zero (pad_for_ddp)
    present = list(parts.modalities) if ranked else live
    reals, inputs = {}, {}
    for name in present:
        reals[name] = next(batches[name])
        inputs[name] = parts.modalities[name].make_input(reals[name], parts.configs[name], parts.noise
                                                         ).to(reals[name].device)
    if parts.schedules:
        horizon = {name: parts.modality_steps.get(name, parts.steps) for name in parts.modalities}
        schedule.apply(parts.opt_g, parts.configs, step, horizon, parts.trunk_users)
        schedule.apply(parts.opt_d, parts.configs, step, horizon, parts.trunk_users)
    return Batch(reals, inputs, live, present, ranked)


def update_discriminator(parts: StepParts, step: int, batch: Batch, fakes: dict[str, torch.Tensor]
                         ) -> dict[str, torch.Tensor]:
    """Real vs detached fakes, for the modalities past their adversarial start; none yet: no D step."""
    active = [name for name in batch.live if adversarial(parts, name, step)]
    if not active:
        return {}
    parts.D.requires_grad_(True)
    judged = list(parts.modalities) if batch.ranked else active
    detached = {name: fake.detach() for name, fake in fakes.items()}
    outputs = parts.D({name: [batch.reals[name], detached[name]] for name in judged})
    loss = half_step_loss(parts, "d", step, batch, detached, lambda name: tuple(outputs[name]), active)
    total = pad_for_ddp(loss.total, {name: outputs[name] for name in judged if name not in active})
    _update(parts, parts.opt_d, total)
    return loss.logged


def update_generator(parts: StepParts, step: int, batch: Batch, fakes: dict[str, torch.Tensor]
                     ) -> dict[str, torch.Tensor]:
    """D frozen, so no gradient reaches (or lingers in) its parameters, and called unwrapped: under DDP a
    wrapped module whose parameters get no gradient stalls the reducer. The shared trunk's gradient is
    the modalities' combined (``trunk.gradients``) where it is not their sum."""
    parts.D.requires_grad_(False)
    shared = shared_trunk_parameters(parts, batch.live) \
        if parts.trunk_gradients != "sum" and len(batch.live) > 1 else []
    loss = half_step_loss(parts, "g", step, batch, fakes, lambda name: (None, parts.D_module(name, fakes[name])),
                          batch.live, per_modality=bool(shared))
    total = pad_for_ddp(loss.total, {name: fakes[name] for name in batch.present if name not in batch.live})
    if shared:
        combined_update(parts, total, loss.per_modality, shared, step)
    elif batch.live or batch.ranked:
        _update(parts, parts.opt_g, total)
    parts.D.requires_grad_(True)
    return loss.logged


def pad_for_ddp(total: Any, idle: dict[str, Any]) -> Any:
    """``total`` plus zero times the outputs of the modalities that run without training this step (before
    their warm-up ends, or past their own steps, in a run of several processes): DDP needs every parameter
    in the graph, and weighted zero their weights do not move."""
    for output in idle.values():
        total = total + 0.0 * _sum_of(output)
    return total


def _update(parts: StepParts, optimizer: torch.optim.Optimizer, total: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    parts.accelerator.backward(total)
    optimizer.step()


def _sum_of(output: Any) -> Any:
    """Every tensor of a discriminator output (or a generated batch) summed (nested lists and tuples)."""
    if isinstance(output, torch.Tensor):
        return output.float().sum()
    if isinstance(output, (list, tuple)):
        return sum((_sum_of(o) for o in output), 0.0)
    logits = getattr(output, "logits", None)
    return 0.0 if logits is None else _sum_of(logits)


def mean_over_processes(accelerator: Accelerator, losses: dict[str, torch.Tensor]) -> dict[str, float]:
    """The logged losses, averaged over all processes (every process calls this at the same steps)."""
    if not losses:
        return {}
    values = torch.stack([v.float() for v in losses.values()])
    if accelerator.num_processes > 1:
        values = accelerator.reduce(values, reduction="mean")
    return dict(zip(losses, values.tolist(), strict=True))
