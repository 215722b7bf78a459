"""An R1 gradient penalty (Mescheder et al. 2018) in every modality's discriminator step, and a command.

R1 penalises the discriminator's gradient on real data: ``gamma / 2 * E ||grad_x D(x)||^2``. It is a
loss term, so it applies to every modality of a run, including ones this plugin has never heard of;
it is logged as ``<modality>/d/r1``. Its setting is the run config's ``[r1]`` section, registered with
``mmgan_register_config``: ``--set r1.gamma=10`` (default 1.0; 0 turns it off), recorded in config.toml.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

import mmgan
from mmgan.losses import LossContext, r1_penalty
from mmgan_toy import __version__

if TYPE_CHECKING:  # torch only in annotations: mmgan loads this module whenever its CLI starts
    import torch


@dataclass
class R1Config:
    """The ``[r1]`` section of every run's config while this plugin is installed."""

    # the penalty's weight: gamma / 2 * E ||grad_x D(x)||^2 (0: off)
    gamma: float = 1.0

    def validate(self) -> None:
        if not self.gamma >= 0:  # also rejects NaN
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")


@mmgan.hookimpl
def mmgan_register_config(register: Callable[[str, type], None]) -> None:
    register("r1", R1Config)


@mmgan.hookimpl
def mmgan_discriminator_loss_terms(ctx: LossContext) -> dict[str, torch.Tensor] | None:
    gamma = ctx.settings("r1").gamma
    if gamma == 0:
        return None
    return {"r1": gamma / 2 * r1_penalty(ctx.discriminator, ctx.real)}


@mmgan.hookimpl
def mmgan_register_commands(cli: click.Group) -> None:
    @cli.command(name="toy-info")
    def toy_info() -> None:
        """Show the version of the mmgan-toy-plugin example and its default R1 gamma."""
        click.echo(f"mmgan-toy-plugin {__version__}")
        click.echo(f"r1 gamma: {R1Config().gamma} by default (set it with --set r1.gamma=VALUE)")
