"""The EMA generator: an exponential moving average of the live generator's weights, for sampling."""

from __future__ import annotations

import torch
from torch import nn


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
