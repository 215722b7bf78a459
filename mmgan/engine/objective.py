"""The loss of one half of a training step: per modality, its adversarial loss (past its warm-up) plus every
plugin's loss terms (``mmgan_loss_terms``, then contract 6's hook of that half, in pluggy's order), summed
over the modalities into one backward."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from mmgan.errors import ConfigError, PluginError
from mmgan.losses import DiscriminatorInactive, LossContext

if TYPE_CHECKING:
    from mmgan.engine.parts import Batch, StepParts


@dataclass
class HalfStepLoss:
    """The summed loss of a half step, its terms detached for the log, and each modality's own sum (when
    asked for: the gradient combination of the shared trunk needs them)."""

    total: Any
    logged: dict[str, torch.Tensor] = field(default_factory=dict)
    per_modality: dict[str, Any] = field(default_factory=dict)


def adversarial(parts: StepParts, name: str, step: int) -> bool:
    """Whether modality ``name`` trains adversarially at ``step`` (0-based): past its warm-up."""
    return step >= getattr(parts.configs[name], "adversarial_start", 0)


def _loss_terms(results: list[dict[str, torch.Tensor] | None], modality: str, kind: str) -> dict[str, torch.Tensor]:
    terms: dict[str, torch.Tensor] = {}
    for answer in results:
        for name, value in (answer or {}).items():
            if name in terms or name == "adv":
                raise PluginError(f"two plugins return the {kind} loss term {name!r} for modality {modality!r}")
            terms[name] = value
    return terms


def half_step_loss(parts: StepParts, kind: str, step: int, batch: Batch, fakes: dict[str, torch.Tensor],
                   judge: Callable[[str], tuple[Any, Any]], names: list[str],
                   per_modality: bool = False) -> HalfStepLoss:
    """The summed loss of one half of the step over the modalities ``names``: ``kind`` "d" (discriminator)
    or "g" (generator).

    ``judge(name)`` gives D's outputs ``(d_real, d_fake)`` for a modality (``d_real`` None in the G
    half: a loss term that wants it computes it with the updated D). Each term is logged as
    ``<modality>/<kind>/<term>``. A modality before its ``adversarial_start`` (G half only) has no
    adversarial term; its loss is its plugins' reconstruction terms, each plugin's terms skipped where they
    need D (``DiscriminatorInactive``). With ``per_modality``, each modality's own sum is kept too.
    """
    # the loss-term hook, then contract 6's hook of this half (plugins written against it)
    hooks = (parts.pm.hook.mmgan_loss_terms,
             parts.pm.hook.mmgan_discriminator_loss_terms if kind == "d" else parts.pm.hook.mmgan_generator_loss_terms)
    who = "discriminator" if kind == "d" else "generator"
    d_plain = parts.D_module
    total: Any = 0.0
    logged: dict[str, torch.Tensor] = {}
    per: dict[str, Any] = {}
    for name in names:
        active = adversarial(parts, name, step)
        d_real, d_fake = judge(name) if active else (None, None)
        ctx = LossContext(parts.modalities[name], parts.configs[name], step, batch.reals[name], fakes[name],
                          batch.inputs[name], d_fake,
                          lambda x, name=name: d_plain(name, x), d_real=d_real, seed=parts.seed,
                          rank=parts.accelerator.process_index, kind=kind, plugin_configs=parts.plugin_configs,
                          adversarial=active)
        if active:
            loss = parts.adversarial[name]
            adv = loss.d_loss(d_real, d_fake) if kind == "d" else loss.g_loss(d_fake)
            terms = _loss_terms([answer for hook in hooks for answer in hook(ctx=ctx)], name, who)
            total = total + adv
            logged[f"{name}/{kind}/adv"] = adv.detach()
        else:
            terms = _loss_terms([answer for hook in hooks for answer in _without_d(hook, ctx)], name, who)
            if not terms:
                raise ConfigError(f"{name}.adversarial_start={parts.configs[name].adversarial_start}, but no plugin "
                                  f"gives {name} a reconstruction loss term: its generator would learn nothing "
                                  "before that step (set it to 0)")
        total = total + sum(terms.values())
        if per_modality:
            per[name] = (adv if active else 0.0) + sum(terms.values())
        logged.update({f"{name}/{kind}/{k}": v.detach() for k, v in terms.items()})
    return HalfStepLoss(total, logged, per)


def _without_d(hook: Any, ctx: LossContext) -> list[dict[str, torch.Tensor] | None]:
    """Each plugin's answer to a loss-term hook, called one plugin at a time so that the terms of one
    that needs D (before the adversarial start) are skipped without losing the others'."""
    answers = []
    for impl in reversed(hook.get_hookimpls()):  # pluggy calls the last registered first
        try:
            answers.append(impl.function(ctx=ctx))
        except DiscriminatorInactive:
            continue
    return answers
