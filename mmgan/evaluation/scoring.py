"""Evaluation shared by ``mmgan eval`` and the engine: what metric plugins receive, and how answers merge.

A modality object's ``evaluate(ctx)``, and every plugin's ``mmgan_evaluate(ctx)``, return ``{metric: value}``
(None for modalities they do not measure); ``evaluate`` merges the answers. ``EvalContext`` carries the
generator under test and hands out seeded real and generated batches, so every plugin sees the same
samples for the same seed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy
import torch
from torch import nn

from mmgan import __version__
from mmgan.checkpoint import read_export
from mmgan.contract import calls, contexts
from mmgan.contract.manager import get_modality, get_plugin_manager
from mmgan.data.loading import open_training_data
from mmgan.errors import MetricError, PluginError
from mmgan.evaluation.inference import load_generator, pick_modality
from mmgan.files import atomic_path

log = logging.getLogger("mmgan")


class ModalityGenerator(nn.Module):
    """One modality's generator out of a ``GeneratorSet``: ``forward(inputs)`` returns samples."""

    def __init__(self, generators: nn.Module, modality: str) -> None:
        super().__init__()
        self.generators = generators
        self.modality = modality

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.generators(self.modality, inputs)


def read_real_data(ctx: contexts.EvalContext) -> torch.utils.data.Dataset:
    """``ctx.data`` opened with ``ctx.seed``: the plugin's dataset, or a stream of WebDataset shards."""
    pm = ctx.pm or get_plugin_manager()
    config = ctx.config
    if dataclasses.is_dataclass(config):
        config = dataclasses.replace(config, data=ctx.data)
    return open_training_data(pm, ctx.name, config, ctx.seed)


@dataclass
class EvalContext(contexts.EvalContext):
    """The contract's :class:`~mmgan.contract.contexts.EvalContext` reading its real data through the
    modality's plugin (or shards) unless given another ``read_real``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.read_real is None:
            self.read_real = read_real_data


Value = float | dict[str, Any]


def metric_value(modality: str, name: str, value: Any) -> Value:
    """A metric as evaluation keeps it: a float, or a dict of numbers, booleans and strings (a verdict)."""
    if isinstance(value, Mapping):
        kept = {}
        for key, item in value.items():
            if not isinstance(item, (bool, int, float, str)):
                raise PluginError(f"metric {modality}/{name}: {key!r} is a {type(item).__name__}; a metric's "
                                  "mapping holds numbers, booleans and strings")
            kept[str(key)] = float(item) if isinstance(item, int) and not isinstance(item, bool) else item
        return kept
    return float(value)


def evaluate(ctx: contexts.EvalContext, pm: pluggy.PluginManager | None = None) -> dict[str, Value]:
    """The modality object's metrics for ``ctx.modality`` and every plugin's, merged; empty if nobody
    evaluates it. A metric name returned twice is a PluginError."""
    merged: dict[str, Value] = {}
    for answer in calls.evaluations(ctx, pm or ctx.pm):
        for name, value in (answer or {}).items():
            if name in merged:
                raise PluginError(f"two plugins return the metric {name!r} for modality {ctx.name!r}")
            merged[name] = metric_value(ctx.name, name, value)
    return merged


def numbers(results: Mapping[str, Value]) -> dict[str, float]:
    """The metrics as numbers by name (a mapping's numbers and booleans as ``name/key``): what
    metrics.jsonl, trackers and ``select_by`` take."""
    flat: dict[str, float] = {}
    for name, value in results.items():
        if isinstance(value, Mapping):
            flat.update({f"{name}/{k}": float(v) for k, v in value.items() if not isinstance(v, str)})
        else:
            flat[name] = value
    return flat


def context_for_run(run_dir: str | Path, modality: str | None = None, data: str | None = None,
                    num_samples: int | None = None, batch_size: int = 250, seed: int = 0,
                    device: torch.device | str = "cpu", options: dict[str, Any] | None = None,
                    pm: pluggy.PluginManager | None = None, last: bool = False) -> EvalContext:
    """An ``EvalContext`` for a run's exported generator; ``data`` defaults to the run's held-out source
    (``<modality>.eval_data``), else its training source, and
    ``num_samples`` to the modality's full evaluation (``Modality.eval_samples``), whatever size the run
    evaluated at while training (``<modality>.eval_samples``, ``train.eval_samples``): a run of one
    modality and a run of several are scored on the same number of samples. The generator is the run's
    best export (``<modality>.select_by``) if it kept one and ``last`` is false."""
    pm = pm or get_plugin_manager()
    name = pick_modality(Path(run_dir), modality)
    generators, config = load_generator(run_dir, name, pm, last=last)
    if num_samples is None:
        num_samples = get_modality(name, pm).eval_samples
    if num_samples < 1 or batch_size < 1:
        raise MetricError(f"-n and --batch-size must be positive, got {num_samples} and {batch_size}")
    device = torch.device(device)
    held_out = data or getattr(config, "eval_data", "") or config.data
    return EvalContext(modality=get_modality(name, pm), config=config,
                       generator=ModalityGenerator(generators, name).to(device).eval(),
                       data=held_out, num_samples=num_samples, batch_size=batch_size, seed=seed,
                       device=device, options=dict(options or {}), pm=pm)


def evaluate_run(run_dir: str | Path, modality: str | None = None, data: str | None = None,
                 num_samples: int | None = None, batch_size: int = 250, seed: int = 0,
                 device: torch.device | str = "cpu",
                 options: dict[str, Any] | None = None, pm: pluggy.PluginManager | None = None,
                 last: bool = False, memorisation: bool = True) -> dict[str, Any]:
    """What ``mmgan eval`` reports for a run's exported generator: the settings and every plugin's metrics,
    and with ``memorisation`` the data-copying verdict (``metrics["memorisation"]``; the generated samples
    nearest their training neighbours, beside them, in ``RUN/memorisation/<modality>``)."""
    ctx = context_for_run(run_dir, modality, data, num_samples, batch_size, seed, device, options, pm, last)
    started = time.perf_counter()
    results = evaluate(ctx, pm)
    if not results:
        raise PluginError(f"no installed plugin computes metrics for modality {ctx.name!r}")
    if memorisation:
        from mmgan.config.values import read_toml
        from mmgan.evaluation.memorisation import memorisation as copying

        run_seed = int(read_toml(Path(run_dir) / "config.toml").get("run", {}).get("seed", 0))
        try:
            results["memorisation"] = metric_value(ctx.name, "memorisation", copying(
                ctx, ctx.config.data, run_seed, Path(run_dir) / "memorisation" / ctx.name))
        except MetricError as exc:  # too few samples, a stream of shards: the other metrics still count
            log.warning("memorisation check skipped: %s", exc)
            results["memorisation"] = {"skipped": str(exc)}
    _, meta = read_export(Path(run_dir), ctx.name, last)
    return {
        "run": str(run_dir), "modality": ctx.name, "step": meta.get("step"),
        "export": "best" if "selected_by" in meta else "last", "data": ctx.data,
        "num_samples": ctx.num_samples, "seed": seed, "options": {k: str(v) for k, v in ctx.options.items()},
        "metrics": results, "seconds": round(time.perf_counter() - started, 1),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "mmgan_version": __version__,
    }


def format_table(results: Mapping[str, Value]) -> str:
    """Metrics as an aligned two-column text table."""
    width = max((len(k) for k in results), default=6)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  {'-' * 12}"]
    lines += [f"{k:<{width}}  {_format(v)}" for k, v in results.items()]
    return "\n".join(lines)


def _format(value: Value) -> str:
    if isinstance(value, Mapping):
        return "  ".join(f"{k}={_format(v) if isinstance(v, float) else v}" for k, v in value.items())
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    """Write ``report`` as JSON, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path
