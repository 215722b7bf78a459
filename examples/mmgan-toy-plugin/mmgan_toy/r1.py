"""An R1 gradient penalty (Mescheder et al. 2018) in every modality's discriminator step, and a command.

R1 penalises the discriminator's gradient on real data: ``gamma / 2 * E ||grad_x D(x)||^2``. It is a
loss term, so it applies to every modality of a run, including ones this plugin has never heard of;
it is logged as ``<modality>/d/r1``. ``MMGAN_TOY_R1_GAMMA`` sets gamma (default 1.0; 0 turns it off).
"""

from __future__ import annotations

import os

import click
import torch

import mmgan
from mmgan.errors import ConfigError
from mmgan.losses import LossContext, logits_of
from mmgan_toy import __version__

GAMMA_VARIABLE = "MMGAN_TOY_R1_GAMMA"


def r1_gamma() -> float:
    """Gamma from the environment, read on each call; a bad value is one clear error."""
    text = os.environ.get(GAMMA_VARIABLE, "1.0")
    try:
        gamma = float(text)
    except ValueError:
        raise ConfigError(f"{GAMMA_VARIABLE}={text!r} is not a number") from None
    if not gamma >= 0:  # also rejects NaN
        raise ConfigError(f"{GAMMA_VARIABLE} must be >= 0, got {text!r}")
    return gamma


def r1_penalty(discriminator: object, real: torch.Tensor) -> torch.Tensor:
    """``E ||grad_x D(x)||^2`` over the batch, with the graph kept so it trains the discriminator."""
    real = real.detach().requires_grad_(True)
    # every scale's logits count (MelGAN-style discriminators return a list)
    score = sum(logits.float().sum() for logits in logits_of(discriminator(real)))
    (grad,) = torch.autograd.grad(score, real, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


@mmgan.hookimpl
def mmgan_discriminator_loss_terms(ctx: LossContext) -> dict[str, torch.Tensor] | None:
    gamma = r1_gamma()
    if gamma == 0:
        return None
    return {"r1": gamma / 2 * r1_penalty(ctx.discriminator, ctx.real)}


@mmgan.hookimpl
def mmgan_register_commands(cli: click.Group) -> None:
    @cli.command(name="toy-info")
    def toy_info() -> None:
        """Show the version of the mmgan-toy-plugin example and its R1 gamma."""
        click.echo(f"mmgan-toy-plugin {__version__}")
        click.echo(f"r1 gamma: {r1_gamma()} (set {GAMMA_VARIABLE})")
