"""What a plugin declares about a modality: its name, config, default data and generator input."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmgan.errors import PluginError

if TYPE_CHECKING:  # torch only in annotations: plugins declare modalities at import, every CLI start
    import torch

ENGINE_DEFAULT = "mmgan_engine_default"  # a field's metadata key: the field sets an engine field's default


def engine_default(value: Any) -> Any:
    """A modality's own default for one of the engine's fields (those of :class:`ModalityConfig`), declared
    as such in its config dataclass: ``data: str = engine_default("builtin:shapes")``. Redeclaring an engine
    field any other way is an error (a field of the same name would silently take the engine's meaning),
    except the six whose defaults plugins of contract 6 gave by redeclaring them (:data:`REDECLARED_BEFORE`).
    """
    return dataclasses.field(default=value, metadata={ENGINE_DEFAULT: True})


@dataclass
class ModalityConfig:
    """Fields every modality config has; plugins subclass this dataclass and add their own.

    ``data`` is the source to train on; ``loss`` names this modality's adversarial loss (empty: the
    run's ``train.loss``), so a multi-task run can train each modality with its paper's objective.
    ``batch_size`` is this modality's batch per process (0: ``train.batch_size``), so a multi-task run
    can give each modality its paper's batch. ``eval_samples`` is how many samples one evaluation of
    this modality uses (0: the smaller of ``train.eval_samples`` and the modality's own
    ``Modality.eval_samples`` during training; ``Modality.eval_samples`` for ``mmgan eval``).
    """

    # the training data: builtin:NAME, a folder, or WebDataset shards (`--data`)
    data: str = ""
    # held-out data for periodic evaluation, select_by and `mmgan eval` (empty: data, whose plugin then
    # picks clips or samples it holds out, as far as it can)
    eval_data: str = ""
    # this modality's adversarial loss (empty: train.loss)
    loss: str = ""
    # this modality's batch per process (0: train.batch_size)
    batch_size: int = 0
    # this modality's own optimisation, for its stem, head and discriminator (0 or -1: the [train] value).
    # A run of several modalities fills them from each modality's suggested training settings, so none
    # takes another's; the shared trunk keeps [train]'s (docs/multitask.md)
    # the loop steps this modality trains: it takes part while the step is below this (0: train.steps)
    steps: int = 0
    # Adam learning rate of its stem and head (0: train.lr_g)
    lr_g: float = 0.0
    # Adam learning rate of its discriminator (0: train.lr_d)
    lr_d: float = 0.0
    # Adam beta1 of its stem, head and discriminator (-1: train.beta1)
    beta1: float = -1.0
    # Adam beta2 of its stem, head and discriminator (-1: train.beta2)
    beta2: float = -1.0
    # the EMA generator's decay for its stem, head and trunk FiLM (-1: train.ema_decay)
    ema_decay: float = -1.0
    # samples per evaluation (0: the smaller of train.eval_samples and the modality's own)
    eval_samples: int = 0
    # a metric of this modality (e.g. "fd"): with periodic evaluation on, the run keeps the export that
    # scored best on it beside the last one (empty: only the last)
    select_by: str = ""
    # how many of the shared trunk's blocks this modality's generator goes through: the first N, at most
    # trunk.depth (-1: all)
    trunk_depth: int = -1
    # before this step the generator learns from its reconstruction loss terms alone and the modality's
    # discriminator is neither updated nor (in a run of this modality alone) run: a warm-up (0: none)
    adversarial_start: int = 0
    # learning-rate schedule of this modality's generator and discriminator: constant, cosine or
    # exponential (to lr_floor at its last step), after a linear warm-up of lr_warmup steps
    lr_schedule: str = "constant"
    # steps of linear learning-rate warm-up from 0 (0: none)
    lr_warmup: int = 0
    # the schedule's last learning rate as a fraction of the first (cosine: >= 0; exponential: > 0)
    lr_floor: float = 0.0


# what each engine field means, for the error that names a plugin's field redeclaring it
ENGINE_FIELDS = {
    "data": "the training data", "eval_data": "held-out data for evaluation",
    "loss": "this modality's adversarial loss", "batch_size": "this modality's batch per process",
    "steps": "the loop steps this modality trains", "lr_g": "the Adam learning rate of its stem and head",
    "lr_d": "the Adam learning rate of its discriminator", "beta1": "its Adam beta1", "beta2": "its Adam beta2",
    "ema_decay": "its EMA generator's decay", "eval_samples": "samples per evaluation",
    "select_by": "the metric that picks the best export", "trunk_depth": "the trunk blocks it goes through",
    "adversarial_start": "the step its adversarial training starts",
    "lr_schedule": "its learning-rate schedule", "lr_warmup": "its learning-rate warm-up steps",
    "lr_floor": "its schedule's last learning rate",
}
# the engine fields whose defaults plugins written against contract 6 set by redeclaring them (still accepted)
REDECLARED_BEFORE = frozenset({"data", "eval_data", "loss", "select_by", "adversarial_start", "trunk_depth"})


def _annotation(cls: type, name: str) -> str:
    value = vars(cls).get("__annotations__", {}).get(name, "")
    return value if isinstance(value, str) else getattr(value, "__name__", str(value))


def check_config_class(modality: str, config_class: type) -> None:
    """A one-line PluginError for a config field that redeclares an engine field with another type, or with
    the same type without :func:`engine_default` (outside :data:`REDECLARED_BEFORE`)."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    for name, meaning in ENGINE_FIELDS.items():
        owner = next((c for c in config_class.__mro__ if c is not ModalityConfig and issubclass(c, ModalityConfig)
                      and name in vars(c).get("__annotations__", {})), None)
        if owner is None:
            continue
        theirs, ours = _annotation(owner, name), _annotation(ModalityConfig, name)
        where = f"modality {modality!r}: {owner.__name__}.{name} ({theirs})"
        engine = f"the engine's ModalityConfig.{name} ({ours}: {meaning})"
        if theirs != ours:
            raise PluginError(f"{where} redeclares {engine} with another type; rename your field")
        if not fields[name].metadata.get(ENGINE_DEFAULT) and name not in REDECLARED_BEFORE:
            raise PluginError(f"{where} redeclares {engine}; rename your field, or set the engine's default with "
                              f"{name}: {ours} = engine_default(...)")


@dataclass(frozen=True)
class Modality:
    """A modality registered by a plugin through ``mmgan_register_modalities``.

    ``make_input(real, config, generator)`` returns the generator input for a batch of real samples:
    noise for an unconditional modality, features of ``real`` (a mel, say) for a conditional one.
    ``generator`` is the engine's seeded RNG; draw all randomness from it so resume stays exact.
    ``sample_input(n, config, generator)`` returns inputs for ``n`` samples without real data (used by
    ``mmgan generate``); it may be None for conditional modalities.
    ``train_defaults`` are ``[train]`` settings the modality suggests (its paper's batch size, say);
    a config file and command-line flags still override them. ``trunk_defaults`` are ``[trunk]`` settings
    it suggests the same way (speech: a deeper trunk, its vocoder's backbone); where modalities suggest
    different values the deepest trunk (and the longest ``steps``) wins, else the first modality named.
    ``legacy_values`` are what a config section written before one of the modality's keys existed meant
    by leaving it out (speech: no ``generator`` key means ``"melgan"``), so old runs resume and old exports
    load as they were trained.
    ``eval_samples`` is how many samples a full evaluation needs (``mmgan eval``'s default ``-n``): 5000
    images for SWD's protocol, a few tens of vocoded clips, which cost seconds each. During training
    ``train.eval_samples`` caps it.
    ``test_settings`` are ``<modality>.key=value`` settings that make its networks tiny (seconds on a CPU)
    for tests: :func:`mmgan.testing.tiny_run` applies them (contract version 7).
    """

    name: str
    config_class: type[ModalityConfig]
    make_input: Callable[[torch.Tensor, Any, torch.Generator], torch.Tensor]
    sample_input: Callable[[int, Any, torch.Generator], torch.Tensor] | None = None
    description: str = ""
    train_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    eval_samples: int = 5000
    bf16: bool = False
    trunk_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    legacy_values: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    test_settings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"modality name {self.name!r} must be a Python identifier")
        if self.eval_samples < 1:
            raise ValueError(f"modality {self.name!r}: eval_samples must be positive, got {self.eval_samples}")
        if not (dataclasses.is_dataclass(self.config_class) and issubclass(self.config_class, ModalityConfig)):
            raise TypeError(f"modality {self.name!r}: config_class must be a ModalityConfig dataclass")
        check_config_class(self.name, self.config_class)
