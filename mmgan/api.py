"""The public API for plugin authors: what a plugin, a command or a metric may import from mmgan.

Everything here is documented in docs/api.md (generated from these objects by ``tools/docs.py``) and
changes only additively within a major version; ``CONTRACT_VERSION`` counts the additions to the hook
contract (each hookspec says in which version it was added). Anything not named here is an
undocumented internal: it may change without notice. Modules that plugins imported before this list
existed (``mmgan.contract.modality``, ``mmgan.losses``, ``mmgan.errors``, ...) keep their names.

    from mmgan.api import ModalityPlugin, Modality, ModalityConfig, hookimpl
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mmgan import __version__
from mmgan.contract.callbacks import TrainingCallback
from mmgan.contract.contexts import ModalityName
from mmgan.contract.hookspecs import hookimpl, hookspec
from mmgan.contract.manager import get_modality, get_modality_object, get_plugin_manager, metric_goals
from mmgan.contract.modality import Modality, ModalityConfig, engine_default
from mmgan.contract.plugin import ModalityPlugin
from mmgan.errors import CheckpointError, ConfigError, DataError, MetricError, MMGANError, PluginError, StorageError
from mmgan.files import atomic_path, writing
from mmgan.losses import AdversarialLoss, DiscriminatorInactive, LossContext, logits_of, r1_penalty
from mmgan.report.section import ReportContext, ReportGroup, ReportItem, ReportSection
from mmgan.testing import load_plugin, plugin_registered, tiny_run

# Names from modules that import torch or scipy are imported on first use (``__getattr__`` below): a
# plugin imports this module when the CLI starts, and ``mmgan --help`` must not pay for torch.
_ON_FIRST_USE = {
    "mmgan.data": ("check_int",),
    "mmgan.evaluation": ("EvalContext", "context_for_run", "evaluate", "evaluate_run"),
    "mmgan.evaluation.inference": ("load_generator", "pick_modality", "sample"),
    "mmgan.evaluation.distances": ("feature_statistics", "frechet_distance", "frechet_distance_from_statistics",
                      "kernel_inception_distance", "precision_recall", "sliced_wasserstein"),
    "mmgan.data.shards": ("PackStream", "ShardCodec"),
}
_MODULE_OF = {name: module for module, names in _ON_FIRST_USE.items() for name in names}

if TYPE_CHECKING:
    from mmgan.data.loading import check_int
    from mmgan.data.shards import PackStream, ShardCodec
    from mmgan.evaluation.distances import (
        feature_statistics,
        frechet_distance,
        frechet_distance_from_statistics,
        kernel_inception_distance,
        precision_recall,
        sliced_wasserstein,
    )
    from mmgan.evaluation.inference import load_generator, pick_modality, sample
    from mmgan.evaluation.scoring import EvalContext, context_for_run, evaluate, evaluate_run


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value  # once imported, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})


# 1: the first published contract. 2: mmgan_register_config, mmgan_register_metrics, LossContext.rng and
# .settings, ModalityPlugin, <modality>.select_by and trunk_depth. 3: Modality.bf16 (train.mixed_precision=auto),
# LossContext.adversarial and DiscriminatorInactive (<modality>.adversarial_start), StorageError and writing,
# mmgan_report_section with ReportContext, ReportSection, ReportGroup and ReportItem. 4: Modality.trunk_defaults
# and Modality.legacy_values; --init-trunk takes a trunk of another depth (the blocks both have). 5: a head
# with takes_input = True is called head(tokens, input) (the generator's input around the trunk). 6: a stem or
# head with at_training_step(step) hears each training step before the trained generator's forward. 7: the
# modality object is the contract (ModalityPlugin's methods are called directly; register(obj)); nine hooks
# (mmgan_loss_terms replaces the two loss-term hooks, its CLI has cli.add_option,
# mmgan_register_callbacks with TrainingCallback); the per-modality hooks move to legacy_hookspecs (kept until
# 1.0); ctx.modality is a ModalityName in every context; metric values may be mappings (verdicts);
# engine_default for a modality's default of an engine field. 8: ModalityPlugin.onnx_module and onnx_axes
# (mmgan export --format onnx). 9: ModalityPlugin.onnx_tolerance.
CONTRACT_VERSION = 9

__all__ = [
    "CONTRACT_VERSION", "__version__", "AdversarialLoss", "atomic_path", "check_int", "CheckpointError",
    "ConfigError", "context_for_run", "DataError", "DiscriminatorInactive", "engine_default", "EvalContext",
    "evaluate", "evaluate_run", "feature_statistics", "frechet_distance", "frechet_distance_from_statistics",
    "get_modality", "get_modality_object", "get_plugin_manager", "hookimpl", "hookspec", "kernel_inception_distance",
    "load_generator", "load_plugin", "logits_of", "LossContext", "metric_goals", "MetricError", "MMGANError",
    "Modality", "ModalityConfig", "ModalityName", "ModalityPlugin", "PackStream", "pick_modality",
    "plugin_registered", "PluginError", "precision_recall", "r1_penalty", "ReportContext", "ReportGroup",
    "ReportItem", "ReportSection", "sample", "ShardCodec", "sliced_wasserstein", "StorageError", "tiny_run",
    "TrainingCallback", "writing",
]
