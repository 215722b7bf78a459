"""One training step: a discriminator update, then a generator update, over every modality at once.

Both halves go through one loss loop (:func:`half_step_loss`): per modality the adversarial loss plus
every plugin's loss terms, summed over modalities into one backward.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy
import torch
from accelerate import Accelerator
from torch import nn

from mmgan.config import schedule
from mmgan.contract.modality import Modality
from mmgan.engine import conflict
from mmgan.errors import ConfigError, PluginError
from mmgan.losses import AdversarialLoss, DiscriminatorInactive, LossContext


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
                   judge: Callable[[str], tuple[Any, Any]], losses: dict[str, torch.Tensor],
                   names: list[str] | None = None, per_modality: dict[str, Any] | None = None) -> Any:
    """The summed loss of one half of the step: ``kind`` "d" (discriminator) or "g" (generator).

    ``judge(name)`` gives D's outputs ``(d_real, d_fake)`` for a modality (``d_real`` None in the G
    half: a loss term that wants it computes it with the updated D). Each term is logged in ``losses``
    as ``<modality>/<kind>/<term>``. ``names``: the modalities to include (default all). A modality
    before its ``adversarial_start`` (G half only) has no adversarial term; its loss is its plugins'
    reconstruction terms, each plugin's terms skipped where they need D (``DiscriminatorInactive``).
    ``per_modality``, when given, receives each modality's own sum.
    """
    # the loss-term hook, then contract 6's hook of this half (plugins written against it)
    hooks = (parts.pm.hook.mmgan_loss_terms,
             parts.pm.hook.mmgan_discriminator_loss_terms if kind == "d" else parts.pm.hook.mmgan_generator_loss_terms)
    who = "discriminator" if kind == "d" else "generator"
    d_plain = parts.D_module
    total: Any = 0.0
    for name in parts.modalities if names is None else names:
        active = adversarial(parts, name, step)
        d_real, d_fake = judge(name) if active else (None, None)
        ctx = LossContext(parts.modalities[name], parts.configs[name], step, reals[name], fakes[name], inputs[name],
                          d_fake,
                          lambda x, name=name: d_plain(name, x), d_real=d_real, seed=parts.seed,
                          rank=parts.accelerator.process_index, kind=kind, plugin_configs=parts.plugin_configs,
                          adversarial=active)
        if active:
            loss = parts.adversarial[name]
            adv = loss.d_loss(d_real, d_fake) if kind == "d" else loss.g_loss(d_fake)
            terms = _loss_terms([answer for hook in hooks for answer in hook(ctx=ctx)], name, who)
            total = total + adv
            losses[f"{name}/{kind}/adv"] = adv.detach()
        else:
            terms = _loss_terms([answer for hook in hooks for answer in _without_d(hook, ctx)], name, who)
            if not terms:
                raise ConfigError(f"{name}.adversarial_start={parts.configs[name].adversarial_start}, but no plugin "
                                  f"gives {name} a reconstruction loss term: its generator would learn nothing "
                                  "before that step (set it to 0)")
        total = total + sum(terms.values())
        if per_modality is not None:
            per_modality[name] = (adv if active else 0.0) + sum(terms.values())
        losses.update({f"{name}/{kind}/{k}": v.detach() for k, v in terms.items()})
    return total


def adversarial(parts: StepParts, name: str, step: int) -> bool:
    """Whether modality ``name`` trains adversarially at ``step`` (0-based): past its warm-up."""
    return step >= getattr(parts.configs[name], "adversarial_start", 0)


def training(parts: StepParts, name: str, step: int) -> bool:
    """Whether modality ``name`` still trains at ``step`` (0-based): below its own steps."""
    return step < parts.modality_steps.get(name, parts.steps)


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


def _update(parts: StepParts, optimizer: torch.optim.Optimizer, total: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    parts.accelerator.backward(total)
    optimizer.step()


def _shared_trunk(parts: StepParts, live: list[str]) -> list[torch.Tensor]:
    """The trainable parameters of the trunk blocks that several of the ``live`` modalities go through (none
    when the trunk is frozen: then the modalities' gradients on it are not used)."""
    generators = parts.accelerator.unwrap_model(parts.G)
    depths = {name: generators.depths[name] for name in live}
    return [p for p in conflict.shared_parameters(generators.trunk, depths) if p.requires_grad]


def _update_combined(parts: StepParts, total: torch.Tensor, per: dict[str, torch.Tensor],
                     shared: list[torch.Tensor], step: int) -> None:
    """The G update with the shared trunk blocks' gradient combined from each modality's (``trunk.gradients``).

    Each modality's gradient on the shared blocks comes from its own loss (``autograd.grad``, which leaves
    ``.grad`` and DDP's reducer alone), averaged over the processes; then one backward of the summed loss
    gives every other parameter its gradient, and the shared blocks' is replaced by the combination.
    """
    acc = parts.accelerator
    if acc.gradient_accumulation_steps > 1:
        raise ConfigError(f"trunk.gradients={parts.trunk_gradients} cannot be combined with gradient accumulation "
                          f"({acc.gradient_accumulation_steps} steps): use trunk.gradients=sum")
    generators = acc.unwrap_model(parts.G)
    # fp16: each modality's gradient from its scaled loss, as the backward's, so that small ones do not
    # underflow and an overflow reaches the scaler (every combination is linear in the gradients' scale)
    scaler = getattr(acc, "scaler", None)
    flat = []
    for name in per:
        if generators.depths[name] == 0:  # a modality that does not go through the trunk gives it nothing
            continue
        loss = scaler.scale(per[name]) if scaler is not None else per[name]
        grads = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
        flat.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                               for g, p in zip(grads, shared, strict=True)]))
    stacked = torch.stack(flat)
    if acc.num_processes > 1:
        stacked = acc.reduce(stacked, reduction="mean")
    order = torch.Generator().manual_seed(parts.seed * 1_000_003 + step)
    combined = conflict.combine(list(stacked), parts.trunk_gradients, order)
    parts.opt_g.zero_grad(set_to_none=True)
    acc.backward(total)
    offset = 0
    for p in shared:
        n = p.numel()
        p.grad = combined[offset:offset + n].view_as(p).to(p.dtype)
        offset += n
    parts.opt_g.step()


def train_step(parts: StepParts, step: int, batches: dict[str, Iterator[Any]]) -> dict[str, torch.Tensor]:
    """One D update and one G update over all modalities; returns the detached losses by name.

    G and D each run once through their (DDP-)wrapped module per step, on every modality at once, so
    every parameter takes part in each backward. Extra calls (loss-term hooks, the G step's D) use the
    unwrapped modules: their gradients still reach the same parameters and are reduced with the rest.
    Before a modality's ``adversarial_start`` its D takes no part: when no modality is adversarial yet
    the D update is skipped whole; in a multi-process run where another one is, that D runs with its
    outputs weighted zero (DDP needs every parameter in the graph), so its weights do not move.
    """
    losses: dict[str, torch.Tensor] = {}
    reals, inputs = {}, {}
    ranked = parts.accelerator.num_processes > 1
    live = [name for name in parts.modalities if training(parts, name, step)]
    # a modality past its own steps takes no part; under DDP it still runs, weighted zero, since every
    # parameter must be in the graph (and its groups' learning rate is 0, so Adam does not move them)
    present = list(parts.modalities) if ranked else live
    for name in present:
        modality = parts.modalities[name]
        reals[name] = next(batches[name])
        inputs[name] = modality.make_input(reals[name], parts.configs[name], parts.noise).to(reals[name].device)
    if parts.schedules:
        horizon = {name: parts.modality_steps.get(name, parts.steps) for name in parts.modalities}
        schedule.apply(parts.opt_g, parts.configs, step, horizon, parts.trunk_users)
        schedule.apply(parts.opt_d, parts.configs, step, horizon, parts.trunk_users)
    # each fake is generated once and reused in the G step
    parts.accelerator.unwrap_model(parts.G).at_training_step(step)
    fakes = parts.G(inputs)
    detached = {name: fake.detach() for name, fake in fakes.items()}

    # discriminator step: real vs detached fakes, for the modalities past their adversarial start
    active = [name for name in live if adversarial(parts, name, step)]
    if active:
        parts.D.requires_grad_(True)
        judged = list(parts.modalities) if ranked else active
        outputs = parts.D({name: [reals[name], detached[name]] for name in judged})
        d_total = half_step_loss(parts, "d", step, reals, detached, inputs, lambda name: tuple(outputs[name]),
                                 losses, names=active)
        for name in judged:
            if name not in active:
                d_total = d_total + 0.0 * _sum_of(outputs[name])
        _update(parts, parts.opt_d, d_total)

    # generator step: D frozen so no gradient reaches (or lingers in) its parameters, and called
    # unwrapped: under DDP a wrapped module whose parameters get no gradient stalls the reducer.
    parts.D.requires_grad_(False)
    shared = _shared_trunk(parts, live) if parts.trunk_gradients != "sum" and len(live) > 1 else []
    per: dict[str, Any] = {}
    g_total = half_step_loss(parts, "g", step, reals, fakes, inputs,
                             lambda name: (None, parts.D_module(name, fakes[name])), losses, names=live,
                             per_modality=per if shared else None)
    for name in present:
        if name not in live:
            g_total = g_total + 0.0 * fakes[name].float().sum()
    if shared:
        _update_combined(parts, g_total, per, shared, step)
    elif live or ranked:
        _update(parts, parts.opt_g, g_total)
    parts.D.requires_grad_(True)
    return losses


def _sum_of(output: Any) -> Any:
    """Every tensor of a discriminator output summed (nested lists and tuples of tensors)."""
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
