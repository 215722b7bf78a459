"""The hooks: where several plugins contribute. Everything one modality answers for itself (its networks,
data, samples, evaluation, report section, shard codec) is a method of its modality object
(:class:`mmgan.contract.plugin.ModalityPlugin`), which core calls directly.

Implement a hook by decorating a function (or a method of a registered object) of the same name with
``mmgan.hookimpl``. Hooks that hand back objects take a ``register`` callback. An implementation may take
fewer arguments than its spec (pluggy passes the ones it names). The per-modality hooks of contract
version 6 and earlier keep working: :mod:`mmgan.contract.legacy_hookspecs`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from mmgan import hookimpl, hookspec
from mmgan.contract.contexts import EvalContext, LossContext

if TYPE_CHECKING:  # torch only in annotations: importing the contract (every CLI start) must stay light
    import torch
    from torch import nn

    from mmgan.contract.adversarial import AdversarialLoss
    from mmgan.contract.callbacks import TrainingCallback
    from mmgan.contract.modality import Modality
    from mmgan.contract.plugin import ModalityPlugin

__all__ = ["hookimpl", "hookspec"]


@hookspec
def mmgan_register_modalities(register: Callable[[ModalityPlugin | Modality], None]) -> None:
    """Called whenever mmgan looks modalities up (often: keep it cheap, without side effects).

    Call ``register(obj)`` for each modality the plugin adds: ``obj`` is a modality object (a
    :class:`~mmgan.contract.plugin.ModalityPlugin`), whose methods core calls. A bare
    :class:`~mmgan.contract.modality.Modality` (contract 1-6) is answered by the per-modality hooks of
    :mod:`~mmgan.contract.legacy_hookspecs`. A name two plugins register disables that modality only, with
    a warning naming both. Added in contract version 1; a modality object since version 7.
    """


@hookspec
def mmgan_register_losses(register: Callable[[str, AdversarialLoss], None]) -> None:
    """Called whenever mmgan looks losses up (keep it cheap). Call ``register(name, loss)`` for each loss.

    ``train.loss`` (or ``<modality>.loss``) picks one by name; a duplicate name is an error.
    Added in contract version 1.
    """


@hookspec
def mmgan_loss_terms(ctx: LossContext) -> dict[str, torch.Tensor] | None:
    """Called in every training step, once per modality and half: ``ctx.kind`` is ``"d"`` (the
    discriminator update; ``ctx.fake`` is detached, ``ctx.discriminator`` re-runs D for penalties) or
    ``"g"`` (the generator update). Return extra weighted loss terms or None.

    Terms from all plugins (a modality object's ``generator_loss_terms`` / ``discriminator_loss_terms``
    among them, in plugin order) are added to the adversarial loss; each is logged as
    ``<modality>/<kind>/<name>``. A term named ``adv``, or one name returned by two plugins, is a
    PluginError. Added in contract version 7 (before: ``mmgan_generator_loss_terms`` and
    ``mmgan_discriminator_loss_terms``, which still work).
    """


@hookspec(firstresult=True)
def mmgan_build_discriminator(modality: str, config: Any) -> nn.Module | None:
    """Called once per modality of a run, to wrap its discriminator: implement it with
    ``hookimpl(wrapper=True)``; ``disc = yield`` receives the module the modality object built (its
    ``build_discriminator``), and what the wrapper returns is used instead (spectral norm, say). A plain
    implementation that returns a module for a modality is contract 6's way of building it.
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
def mmgan_evaluate(ctx: EvalContext) -> dict[str, Any] | None:
    """Called by ``mmgan eval`` and every ``train.eval_every`` steps, once per modality, after the modality
    object's own ``evaluate``: a plugin that adds metrics to a modality returns ``{name: value}`` (None for
    modalities it does not measure). A value is a number, or a mapping of numbers, booleans and strings
    (a verdict with its statistic, say: ``{"copying": False, "statistic": 1.8, "threshold": -3.0}``),
    stored as it is in eval.json. One name returned twice is a PluginError. Raise
    ``mmgan.errors.MetricError`` (one line) when the samples cannot give a meaningful number.
    Added in contract version 1; mapping values in version 7.
    """


@hookspec
def mmgan_register_metrics(register: Callable[[str, str, str], None]) -> None:
    """Called when a run with ``<modality>.select_by`` starts, to learn which way each metric is better.

    Call ``register(modality, metric, goal)`` for each number your ``mmgan_evaluate`` returns, with
    ``goal`` "min" (lower is better: distances) or "max" (higher is better: recall, coverage). A modality
    object declares its own in ``metric_goals``. Metrics nobody registers cannot select the best
    checkpoint. Added in contract version 2.
    """


@hookspec
def mmgan_register_commands(cli: click.Group) -> None:
    """Called when the CLI starts. Add click commands or groups to ``cli``; ``cli.add_option(command,
    click.Option([...]))`` gives a core command an option of yours (today ``eval``: its value, when given,
    reaches evaluation as ``ctx.options[<option's name>]``). An option the command already has is a
    PluginError. Added in contract version 1; ``cli.add_option`` in version 7.
    """


@hookspec
def mmgan_register_callbacks(register: Callable[[TrainingCallback], None]) -> None:
    """Called when a run starts. Call ``register(callback)`` with a
    :class:`~mmgan.contract.callbacks.TrainingCallback` to hear every training step (its losses) and
    evaluation; its ``state_dict()`` is saved in each checkpoint and given back to ``load_state_dict`` on
    resume, so a callback with state (a window, a counter) resumes exactly. Added in contract version 7.
    """
