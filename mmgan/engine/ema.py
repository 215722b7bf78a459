"""The EMA generator: an exponential moving average of the live generator's weights, for sampling."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def ema_decay(step: int, cap: float, rampup: float) -> float:
    """EMA decay at ``step``: the half-life grows with training (``rampup`` of the steps so far, as in
    StyleGAN2-ADA), capped at ``cap``; without it, early EMA weights average random initialisations."""
    if rampup <= 0:
        return cap
    half_life = max(rampup * (step + 1), 1e-8)
    return min(cap, 0.5 ** (1 / half_life))


@torch.no_grad()
def update_ema(ema: nn.Module, live: nn.Module, decay: float) -> None:
    """Move ``ema``'s parameters a ``1 - decay`` share towards ``live``'s; copy its buffers."""
    ema_params, live_params = list(ema.parameters()), list(live.parameters())
    torch._foreach_lerp_(ema_params, live_params, 1 - decay)
    for ema_buf, buf in zip(ema.buffers(), live.buffers(), strict=True):
        ema_buf.copy_(buf)


def ema_groups(ema: nn.Module, live: nn.Module, decays: dict[str, float], default: float,
               blocks: Mapping[int, str] | None = None) -> list[tuple[float, list[torch.Tensor], list[torch.Tensor]]]:
    """The generators' parameters grouped by EMA decay cap: each modality's own (``stems.<m>.``,
    ``heads.<m>.``, ``trunk.film.<m>``, ``trunk.gate.<m>``, and the trunk blocks ``blocks`` gives it) at
    ``decays[m]``, everything else (the shared trunk) at ``default``; as (cap, EMA parameters, live
    parameters). One group where all caps agree."""
    if all(decay == default for decay in decays.values()):
        return [(default, list(ema.parameters()), list(live.parameters()))]
    live_params = dict(live.named_parameters())
    groups: dict[float, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    for name, param in ema.named_parameters():
        owner = next((m for m in decays if name.startswith((f"stems.{m}.", f"heads.{m}."))
                      or name in (f"trunk.film.{m}", f"trunk.gate.{m}")), None)
        if owner is None and name.startswith("trunk.blocks."):
            owner = (blocks or {}).get(int(name.split(".")[2]))
        cap = decays[owner] if owner is not None else default
        pair = groups.setdefault(cap, ([], []))
        pair[0].append(param)
        pair[1].append(live_params[name])
    return [(cap, ema_params, live_list) for cap, (ema_params, live_list) in groups.items()]


@torch.no_grad()
def update_ema_groups(groups: list[tuple[float, list[torch.Tensor], list[torch.Tensor]]], step: int, rampup: float,
                      ema: nn.Module, live: nn.Module) -> None:
    """One EMA update of :func:`ema_groups`' groups (``(cap, EMA params, live params)``), each at its own
    :func:`ema_decay` for ``step``; the buffers copied. One group is :func:`update_ema`, as runs always had."""
    if len(groups) == 1:
        update_ema(ema, live, ema_decay(step, groups[0][0], rampup))
        return
    for cap, ema_params, live_params in groups:
        torch._foreach_lerp_(ema_params, live_params, 1 - ema_decay(step, cap, rampup))
    for ema_buf, buf in zip(ema.buffers(), live.buffers(), strict=True):
        ema_buf.copy_(buf)


def batchnorm_layers(module: nn.Module) -> list[_BatchNorm]:
    """Every BatchNorm layer (plain or synchronised) inside ``module``."""
    return [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate_batchnorm(generate: Callable[[torch.Tensor], object], layers: list[_BatchNorm],
                          inputs: Iterable[torch.Tensor]) -> int:
    """Recompute the running statistics of ``layers`` for the weights they have now.

    The EMA generator's weights are an average over many steps; BatchNorm statistics copied from the
    live generator describe the live weights' activations, not the average's. This forgets them and
    runs ``generate`` on ``inputs`` with the layers in training mode and a cumulative average
    (``momentum=None``), so each ends with the mean and variance of its activations over all the
    batches (with :class:`mmgan.engine.distributed.SyncBatchNorm`, over every process's batches: every
    process must call this with the same number of batches). Returns the number of batches run.
    """
    if not layers:
        return 0
    saved = [(m.momentum, m.training) for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    count = 0
    try:
        for x in inputs:
            generate(x)
            count += 1
    finally:
        for m, (momentum, training) in zip(layers, saved, strict=True):
            m.momentum = momentum
            m.train(training)
    return count
