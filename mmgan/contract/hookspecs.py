"""The plugin contract: every hook mmgan calls, with when it is called and what it must return.

Implement a hook by decorating a function of the same name with ``mmgan.hookimpl`` in a module
registered under the ``mmgan`` entry-point group. Hooks that hand back several objects take a
``register`` callback instead of returning a list.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import pluggy

from mmgan.report.section import ReportContext, ReportSection  # light (no torch): the report hook's types

if TYPE_CHECKING:  # torch only in annotations: importing the contract (every CLI start) must stay light
    import torch
    from torch import nn

    from mmgan.contract.modality import Modality
    from mmgan.data.shards import ShardCodec
    from mmgan.evaluation.scoring import EvalContext
    from mmgan.losses import AdversarialLoss, LossContext

hookspec = pluggy.HookspecMarker("mmgan")
hookimpl = pluggy.HookimplMarker("mmgan")


@hookspec
def mmgan_register_modalities(register: Callable[[Modality], None]) -> None:
    """Called whenever mmgan looks modalities up (often: keep it cheap, without side effects).

    Call ``register(Modality(...))`` for each modality the plugin adds.
    Added in contract version 1.
    """


@hookspec(firstresult=True)
def mmgan_build_generator(
    modality: str, config: Any, width: int
) -> tuple[nn.Module, nn.Module] | None:
    """Called once per modality of a run. Return ``(stem, head)`` for ``modality`` or None if not yours.

    The stem maps the generator input to tokens ``(B, width, T)``; the head maps trunk tokens of the same
    shape to a sample. ``config`` is the modality's config dataclass. The first non-None answer wins.
    A head with an attribute ``takes_input = True`` is called ``head(tokens, input)``: the generator's
    input reaches it around the trunk (contract version 5; e.g. a vocoder's mel for a magnitude prior).
    A stem or head with a method ``at_training_step(step)`` has it called with the 0-based step before each
    training step's forward of the trained generator, never on the EMA copy, in evaluation or in inference
    (contract version 6; e.g. a stage of the head that starts at some step).
    Added in contract version 1.
    """


@hookspec(firstresult=True)
def mmgan_build_discriminator(modality: str, config: Any) -> nn.Module | None:
    """Called once per modality of a run. Return the discriminator for ``modality`` or None if not yours.

    Its forward takes a batch of real or generated samples and returns logits: a tensor, a list of
    tensors (several scales), or an object with a ``logits`` attribute. To wrap the discriminator of
    another plugin (spectral norm, say), implement this hook with ``hookimpl(wrapper=True)``:
    ``disc = yield`` receives the built module, and what the wrapper returns is used instead.
    Added in contract version 1.
    """


@hookspec
def mmgan_register_losses(register: Callable[[str, AdversarialLoss], None]) -> None:
    """Called whenever mmgan looks losses up (keep it cheap). Call ``register(name, loss)`` for each loss.

    ``train.loss`` in the run config picks one by name; a duplicate name is an error.
    Added in contract version 1.
    """


@hookspec
def mmgan_generator_loss_terms(ctx: LossContext) -> dict[str, torch.Tensor] | None:
    """Called in every generator step, once per modality. Return extra weighted loss terms or None.

    Terms from all plugins are added to the adversarial loss; each is logged as ``<modality>/g/<name>``.
    A term named ``adv``, or one name returned by two plugins, is a PluginError.
    ``ctx`` holds the modality, its config, real and generated batches and the discriminator outputs.
    Added in contract version 1.
    """


@hookspec
def mmgan_discriminator_loss_terms(ctx: LossContext) -> dict[str, torch.Tensor] | None:
    """Called in every discriminator step, once per modality. Return extra weighted loss terms or None.

    Terms from all plugins are added to the adversarial loss; each is logged as ``<modality>/d/<name>``.
    A term named ``adv``, or one name returned by two plugins, is a PluginError.
    ``ctx.fake`` is detached here; ``ctx.discriminator`` re-runs D (for gradient penalties).
    Added in contract version 1.
    """


@hookspec(firstresult=True)
def mmgan_read_data(modality: str, source: str, config: Any, seed: int) -> torch.utils.data.Dataset | None:
    """Called when a run starts. Return a dataset of real samples for ``modality`` read from ``source``.

    ``source`` is ``builtin:<name>`` or a path. Return None if the source is not yours; raise
    ``mmgan.errors.DataError`` with one line naming the source if it is yours but unreadable.
    Items must be tensors of the shape the discriminator takes (without the batch dimension).
    Added in contract version 1.
    """


@hookspec(firstresult=True)
def mmgan_shard_codec(modality: str, config: Any) -> ShardCodec | None:
    """Called by ``mmgan data pack`` and when a run reads WebDataset shards. Return the
    :class:`mmgan.data.shards.ShardCodec` for ``modality`` (it packs a source into ``{extension: bytes}``
    samples and decodes them back into training tensors), or None if the modality is not yours.

    Core owns everything else about shards: the manifest, splitting by rank and worker, shuffling,
    resampling and skipping corrupt members.
    Added in contract version 1.
    """


@hookspec(firstresult=True)
def mmgan_write_samples(
    modality: str, samples: torch.Tensor, path: Path, config: Any, real: torch.Tensor | None
) -> list[Path] | None:
    """Called by the engine every ``train.sample_every`` steps and by ``mmgan generate``.

    Write ``samples`` (generator output, float32 on CPU) for ``modality`` at ``path``, atomically; the
    plugin adds the suffix when ``path`` has none. ``real`` is a batch of real samples to show beside
    them, or None. Return the written paths, or None if the modality is not yours.
    Added in contract version 1.
    """


@hookspec
def mmgan_evaluate(ctx: EvalContext) -> dict[str, float] | None:
    """Called by ``mmgan eval`` and every ``train.eval_every`` steps, once per modality. Return metrics or None.

    ``ctx`` holds the modality, its config, its generator in eval mode, the real-data source and seeded
    ``real_batches()``/``fake_batches()``. Return ``{name: value}`` for modalities you measure, None for
    the others. Answers of all plugins are merged; one name returned by two plugins is a PluginError.
    Raise ``mmgan.errors.MetricError`` (one line) when the samples cannot give a meaningful number.
    Added in contract version 1.
    """


@hookspec
def mmgan_register_config(register: Callable[[str, type], None]) -> None:
    """Called whenever a run's config is resolved (before its run directory exists), for a plugin that
    has settings but adds no modality (a loss term's weight, say; a modality's settings live in its
    ``config_class``).

    Call ``register(section, dataclass)``: the section appears in every run's config as ``[section]``,
    set with ``--set section.key=value`` or TOML, recorded in config.toml and validated with the rest
    (a ``validate(self)`` method on the dataclass is called). Loss terms read it with
    ``ctx.settings(section)``. A section named like core's (run, train, trunk), a modality or another
    plugin's section is a one-line error naming both plugins. Added in contract version 2.
    """


@hookspec
def mmgan_register_metrics(register: Callable[[str, str, str], None]) -> None:
    """Called when a run with ``<modality>.select_by`` starts, to learn which way each metric is better.

    Call ``register(modality, metric, goal)`` for each metric your ``mmgan_evaluate`` returns, with
    ``goal`` "min" (lower is better: distances) or "max" (higher is better: recall, coverage). Metrics
    nobody registers cannot be used to select the best checkpoint. Added in contract version 2.
    """


@hookspec
def mmgan_report_section(ctx: ReportContext) -> ReportSection | None:
    """Called by ``mmgan report``, once per modality of each run reported. Return a
    :class:`mmgan.report.section.ReportSection` showing that modality's samples, or None.

    ``ctx`` names the modality and holds its config, the run directory, the sample steps, the best step
    and a directory for files you write (``ctx.file(name)``); ``ctx.real_samples(n)`` reads the real
    samples the run showed. The section lists pictures and sounds (the run's own files or ones you
    wrote), which core's template lays out: keep it to a few per step. Every answer is shown.
    Added in contract version 3.
    """


@hookspec
def mmgan_command_options(command: str, add: Callable[[click.Option], None]) -> None:
    """Called when the CLI is built, once for each core command that takes plugin options (today
    ``eval``). Call ``add(click.Option([...]))`` to give the command an option of yours; for ``eval``
    its value (when given) reaches ``mmgan_evaluate`` as ``ctx.options[<option's name>]``. An option the
    command already has is a PluginError. Added in contract version 2.
    """


@hookspec
def mmgan_register_commands(cli: click.Group) -> None:
    """Called when the CLI starts. Add click commands or groups to ``cli``.

    Added in contract version 1.
    """
