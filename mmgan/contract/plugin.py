"""A modality plugin declared once: subclass :class:`ModalityPlugin`, write methods, no guards.

The hooks that concern one modality (build its generator, read its data, write its samples, ...) are
called for every modality of a run, so a plugin written as module functions starts each with
``if modality != NAME: return None``. A ``ModalityPlugin`` answers those hooks for its own modality and
passes (None) for the others; you write plain methods::

    class Ring(ModalityPlugin):
        modality = Modality(name="ring2d", config_class=RingConfig, make_input=noise, sample_input=...)

        def build_generator(self, config, width):
            return RingStem(config, width), RingHead(width)

        def build_discriminator(self, config):
            return RingDiscriminator(config)

    plugin = Ring()          # the entry point names this object: ring2d = "mmgan_toy.ring:plugin"

Methods you leave out answer None (the next plugin, or core, decides). Hooks that do not concern one
modality (``mmgan_register_commands``, ``mmgan_register_losses``) are written on the subclass as
``@mmgan.hookimpl`` methods, as in a module. Module functions keep working: both forms register the same.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pluggy

from mmgan.contract.modality import Modality

if TYPE_CHECKING:  # torch only in annotations: a plugin's class is defined at import, every CLI start
    import torch
    from torch import nn

    from mmgan.data.shards import ShardCodec
    from mmgan.evaluation.scoring import EvalContext
    from mmgan.losses import LossContext
    from mmgan.report.section import ReportContext, ReportSection

hookimpl = pluggy.HookimplMarker("mmgan")


class ModalityPlugin:
    """Base class of a plugin that adds one modality; set ``modality`` and override what you need."""

    modality: ClassVar[Modality]
    #: ``{metric: "min" | "max"}`` for the metrics :meth:`evaluate` returns (which way is better)
    metric_goals: ClassVar[dict[str, str]] = {}

    @property
    def name(self) -> str:
        return self.modality.name

    # ---- what a modality writes ------------------------------------------------------------------

    def build_generator(self, config: Any, width: int) -> tuple[nn.Module, nn.Module] | None:
        """``(stem, head)`` around the shared trunk: see ``mmgan_build_generator``."""
        return None

    def build_discriminator(self, config: Any) -> nn.Module | None:
        """The discriminator: see ``mmgan_build_discriminator``."""
        return None

    def read_data(self, source: str, config: Any, seed: int) -> torch.utils.data.Dataset | None:
        """A dataset for ``source``, or None if the source is not yours: see ``mmgan_read_data``."""
        return None

    def shard_codec(self, config: Any) -> ShardCodec | None:
        """How samples are packed into WebDataset shards: see ``mmgan_shard_codec``."""
        return None

    def write_samples(self, samples: torch.Tensor, path: Path, config: Any,
                      real: torch.Tensor | None) -> list[Path] | None:
        """Write generated samples: see ``mmgan_write_samples``."""
        return None

    def generator_loss_terms(self, ctx: LossContext) -> dict[str, torch.Tensor] | None:
        """Extra generator loss terms for this modality: see ``mmgan_generator_loss_terms``."""
        return None

    def discriminator_loss_terms(self, ctx: LossContext) -> dict[str, torch.Tensor] | None:
        """Extra discriminator loss terms for this modality: see ``mmgan_discriminator_loss_terms``."""
        return None

    def evaluate(self, ctx: EvalContext) -> dict[str, float] | None:
        """Metrics of this modality's generator: see ``mmgan_evaluate``."""
        return None

    def report_section(self, ctx: ReportContext) -> ReportSection | None:
        """This modality's samples in ``mmgan report``: see ``mmgan_report_section``."""
        return None

    # ---- the hooks, answered for this modality only -----------------------------------------------

    @hookimpl
    def mmgan_register_modalities(self, register: Callable[[Modality], None]) -> None:
        register(self.modality)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give the subclass the hook of each method it overrides (so ``mmgan plugins`` lists exactly
        what it implements), and ``mmgan_register_metrics`` if it declares ``metric_goals``."""
        super().__init_subclass__(**kwargs)
        for method in _METHOD_HOOKS:
            if getattr(cls, method) is not getattr(ModalityPlugin, method):
                setattr(cls, f"mmgan_{method}", hookimpl(_hook_calling(method)))
        if cls.metric_goals:
            cls.mmgan_register_metrics = hookimpl(_register_metrics)


_METHOD_HOOKS = ("build_generator", "build_discriminator", "read_data", "shard_codec", "write_samples",
                 "generator_loss_terms", "discriminator_loss_terms", "evaluate", "report_section")


def _hook_calling(method: str) -> Callable[..., Any]:
    """A hook implementation (its argument names are the hookspec's) that calls ``method`` for the
    plugin's own modality and answers None for every other."""
    if method == "build_generator":
        def hook(self, modality, config, width):  # noqa: ANN001, ANN202
            return self.build_generator(config, width) if modality == self.name else None
    elif method == "build_discriminator":
        def hook(self, modality, config):  # noqa: ANN001, ANN202
            return self.build_discriminator(config) if modality == self.name else None
    elif method == "read_data":
        def hook(self, modality, source, config, seed):  # noqa: ANN001, ANN202
            return self.read_data(source, config, seed) if modality == self.name else None
    elif method == "shard_codec":
        def hook(self, modality, config):  # noqa: ANN001, ANN202
            return self.shard_codec(config) if modality == self.name else None
    elif method == "write_samples":
        def hook(self, modality, samples, path, config, real):  # noqa: ANN001, ANN202
            return self.write_samples(samples, path, config, real) if modality == self.name else None
    elif method == "evaluate":
        def hook(self, ctx):  # noqa: ANN001, ANN202
            return self.evaluate(ctx) if ctx.modality.name == self.name else None
    elif method == "report_section":  # ctx.modality is the modality's name
        def hook(self, ctx):  # noqa: ANN001, ANN202
            return self.report_section(ctx) if ctx.modality == self.name else None
    else:  # the loss terms: ctx.modality is the modality's name
        def hook(self, ctx):  # noqa: ANN001, ANN202
            return getattr(self, method)(ctx) if ctx.modality == self.name else None
    hook.__name__ = f"mmgan_{method}"
    return hook


def _register_metrics(self: ModalityPlugin, register: Callable[[str, str, str], None]) -> None:
    for metric, goal in self.metric_goals.items():
        register(self.name, metric, goal)
