"""The EMA generator: an exponential moving average of the live generator's weights, for sampling."""

from __future__ import annotations

from collections.abc import Callable, Iterable

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
    batches (with :class:`mmgan.distributed.SyncBatchNorm`, over every process's batches: every
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
