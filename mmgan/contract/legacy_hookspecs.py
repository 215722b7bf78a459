"""The per-modality hooks of contract versions 1-6, kept so that plugins written against them keep working.

Since contract version 7 a modality is an object whose methods core calls
(:class:`mmgan.contract.plugin.ModalityPlugin`), and the loss terms have one hook
(``mmgan_loss_terms``). Core still calls every hook below, after (or, for the first-answer hooks,
before) the modality object, so an old plugin behaves as it did; a plugin that implements one is warned
once per process. Deprecation timeline: they keep working through every 0.x release and are removed in
mmgan 1.0. docs/plugins.md ("Migrating from the per-modality hooks") shows each one's replacement.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mmgan import hookspec
from mmgan.contract.contexts import LossContext, ReportContext, ReportSection

if TYPE_CHECKING:
    import torch
    from torch import nn

    from mmgan.contract.codec import ShardCodec

# each legacy hook -> what replaces it (shown in the warning and in docs/plugins.md)
REPLACED_BY = {
    "mmgan_build_generator": "ModalityPlugin.build_generator",
    "mmgan_read_data": "ModalityPlugin.read_data",
    "mmgan_shard_codec": "ModalityPlugin.shard_codec",
    "mmgan_write_samples": "ModalityPlugin.write_samples",
    "mmgan_report_section": "ModalityPlugin.report_section",
    "mmgan_generator_loss_terms": "mmgan_loss_terms (ctx.kind == 'g') or ModalityPlugin.generator_loss_terms",
    "mmgan_discriminator_loss_terms": "mmgan_loss_terms (ctx.kind == 'd') or ModalityPlugin.discriminator_loss_terms",
    "mmgan_command_options": "cli.add_option(command, option) in mmgan_register_commands",
}


@hookspec(firstresult=True)
def mmgan_build_generator(modality: str, config: Any, width: int) -> tuple[nn.Module, nn.Module] | None:
    """Called once per modality of a run, before the modality object's ``build_generator``. Return
    ``(stem, head)`` for ``modality`` or None if not yours. Added in contract version 1; legacy since 7.
    """


@hookspec(firstresult=True)
def mmgan_read_data(modality: str, source: str, config: Any, seed: int) -> torch.utils.data.Dataset | None:
    """Called when a run opens a source, before the modality object's ``read_data``. Return a dataset of
    real samples for ``modality`` read from ``source``, or None if the source is not yours.
    Added in contract version 1; legacy since 7.
    """


@hookspec(firstresult=True)
def mmgan_shard_codec(modality: str, config: Any) -> ShardCodec | None:
    """Called by ``mmgan data pack`` and when a run reads shards, before the modality object's
    ``shard_codec``. Return the codec for ``modality`` or None. Added in contract version 1; legacy since 7.
    """


@hookspec(firstresult=True)
def mmgan_write_samples(modality: str, samples: torch.Tensor, path: Path, config: Any,
                        real: torch.Tensor | None) -> list[Path] | None:
    """Called every ``train.sample_every`` steps and by ``mmgan generate``, before the modality object's
    ``write_samples``. Write the samples and return the paths, or None if the modality is not yours.
    Added in contract version 1; legacy since 7.
    """


@hookspec
def mmgan_report_section(ctx: ReportContext) -> ReportSection | None:
    """Called by ``mmgan report`` once per modality of each run, after the modality object's
    ``report_section``; every answer is shown. Added in contract version 3; legacy since 7.
    """


@hookspec
def mmgan_generator_loss_terms(ctx: LossContext) -> dict[str, torch.Tensor] | None:
    """Called in every generator step once per modality, after ``mmgan_loss_terms``. Return extra loss
    terms or None. Added in contract version 1; legacy since 7.
    """


@hookspec
def mmgan_discriminator_loss_terms(ctx: LossContext) -> dict[str, torch.Tensor] | None:
    """Called in every discriminator step once per modality, after ``mmgan_loss_terms``. Return extra loss
    terms or None. Added in contract version 1; legacy since 7.
    """


@hookspec
def mmgan_command_options(command: str, add: Callable[[click.Option], None]) -> None:
    """Called when the CLI is built, once for each core command that takes plugin options (``eval``), after
    ``mmgan_register_commands``. Call ``add(click.Option([...]))``. Added in contract version 2; legacy since 7.
    """


HOOKS = tuple(REPLACED_BY)
