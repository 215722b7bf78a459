"""One training step: a discriminator update, then a generator update, over every modality at once.

Both halves go through one loss loop (:func:`half_step_loss`): per modality the adversarial loss plus
every plugin's loss terms, summed over modalities into one backward.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pluggy
import torch
from accelerate import Accelerator
from torch import nn

from mmgan.errors import PluginError
from mmgan.losses import AdversarialLoss, LossContext
from mmgan.modality import Modality


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


def _loss_terms(results: list[dict[str, torch.Tensor] | None], modality: str, kind: str) -> dict[str, torch.Tensor]:
    terms: dict[str, torch.Tensor] = {}
    for answer in results:
        for name, value in (answer or {}).items():
            if name in terms or name == "adv":
                raise PluginError(f"two plugins return the {kind} loss term {name!r} for modality {modality!r}")
            terms[name] = value
    return terms


def half_step_loss(parts: StepParts, kind: str, step: int, reals: dict[str, torch.Tensor],
                   fakes: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor],
                   judge: Callable[[str], tuple[Any, Any]], losses: dict[str, torch.Tensor]) -> torch.Tensor:
    """The summed loss of one half of the step: ``kind`` "d" (discriminator) or "g" (generator).

    ``judge(name)`` gives D's outputs ``(d_real, d_fake)`` for a modality (``d_real`` None in the G
    half: a loss term that wants it computes it with the updated D). Each term is logged in ``losses``
    as ``<modality>/<kind>/<term>``.
    """
    hook = parts.pm.hook.mmgan_discriminator_loss_terms if kind == "d" else parts.pm.hook.mmgan_generator_loss_terms
    who = "discriminator" if kind == "d" else "generator"
    d_plain = parts.D_module
    total: Any = 0.0
    for name in parts.modalities:
        d_real, d_fake = judge(name)
        loss = parts.adversarial[name]
        adv = loss.d_loss(d_real, d_fake) if kind == "d" else loss.g_loss(d_fake)
        ctx = LossContext(name, parts.configs[name], step, reals[name], fakes[name], inputs[name], d_fake,
                          lambda x, name=name: d_plain(name, x), d_real=d_real, seed=parts.seed,
                          rank=parts.accelerator.process_index, kind=kind, plugin_configs=parts.plugin_configs)
        terms = _loss_terms(hook(ctx=ctx), name, who)
        total = total + adv + sum(terms.values())
        losses[f"{name}/{kind}/adv"] = adv.detach()
        losses.update({f"{name}/{kind}/{k}": v.detach() for k, v in terms.items()})
    return total


def _update(parts: StepParts, optimizer: torch.optim.Optimizer, total: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    parts.accelerator.backward(total)
    optimizer.step()


def train_step(parts: StepParts, step: int, batches: dict[str, Iterator[Any]]) -> dict[str, torch.Tensor]:
    """One D update and one G update over all modalities; returns the detached losses by name.

    G and D each run once through their (DDP-)wrapped module per step, on every modality at once, so
    every parameter takes part in each backward. Extra calls (loss-term hooks, the G step's D) use the
    unwrapped modules: their gradients still reach the same parameters and are reduced with the rest.
    """
    losses: dict[str, torch.Tensor] = {}
    reals, inputs = {}, {}
    for name, modality in parts.modalities.items():
        reals[name] = next(batches[name])
        inputs[name] = modality.make_input(reals[name], parts.configs[name], parts.noise).to(reals[name].device)
    # each fake is generated once and reused in the G step
    fakes = parts.G(inputs)
    detached = {name: fake.detach() for name, fake in fakes.items()}

    # discriminator step: real vs detached fakes
    parts.D.requires_grad_(True)
    outputs = parts.D({name: [reals[name], detached[name]] for name in parts.modalities})
    d_total = half_step_loss(parts, "d", step, reals, detached, inputs, lambda name: tuple(outputs[name]), losses)
    _update(parts, parts.opt_d, d_total)

    # generator step: D frozen so no gradient reaches (or lingers in) its parameters, and called
    # unwrapped: under DDP a wrapped module whose parameters get no gradient stalls the reducer.
    parts.D.requires_grad_(False)
    g_total = half_step_loss(parts, "g", step, reals, fakes, inputs,
                             lambda name: (None, parts.D_module(name, fakes[name])), losses)
    _update(parts, parts.opt_g, g_total)
    parts.D.requires_grad_(True)
    return losses
