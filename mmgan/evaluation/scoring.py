"""Evaluation shared by ``mmgan eval`` and the engine: what metric plugins receive, and how answers merge.

Every plugin may implement ``mmgan_evaluate(ctx)`` and return ``{metric: value}`` for the modalities it
knows (None otherwise); ``evaluate`` calls them all and merges the answers. ``EvalContext`` carries the
generator under test and hands out seeded real and generated batches, so every plugin sees the same
samples for the same seed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
import torch
from torch import nn

from mmgan.contract.modality import Modality
from mmgan.errors import MetricError, PluginError
from mmgan.files import atomic_path

# offsets keep the real-sample choice and the generator noise independent streams of one seed
_NOISE_SEED_OFFSET = 1_000_003


class ModalityGenerator(nn.Module):
    """One modality's generator out of a ``GeneratorSet``: ``forward(inputs)`` returns samples."""

    def __init__(self, generators: nn.Module, modality: str) -> None:
        super().__init__()
        self.generators = generators
        self.modality = modality

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.generators(self.modality, inputs)


@dataclass
class EvalContext:
    """What ``mmgan_evaluate`` receives: one modality's generator and where its real samples come from.

    ``generator(inputs)`` returns samples (eval mode, on ``device``); ``data`` is the real-data source
    string (``builtin:<name>``, a folder, ...); ``options`` holds extra settings such as
    ``{"inception_weights": path}``. ``real_batches()`` and ``fake_batches()`` are deterministic
    functions of ``seed``.
    """

    modality: Modality
    config: Any
    generator: nn.Module
    data: str
    num_samples: int
    batch_size: int = 250
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    options: dict[str, Any] = field(default_factory=dict)
    pm: pluggy.PluginManager | None = None

    @property
    def name(self) -> str:
        return self.modality.name

    def real_dataset(self) -> torch.utils.data.Dataset:
        """The real-data source opened with ``seed``: the plugin's dataset, or a stream of WebDataset shards."""
        from mmgan.contract.manager import get_plugin_manager
        from mmgan.data.loading import open_training_data

        pm = self.pm or get_plugin_manager()
        config = self.config
        if dataclasses.is_dataclass(config):
            config = dataclasses.replace(config, data=self.data)
        return open_training_data(pm, self.name, config, self.seed)

    def real_batches(self) -> Iterator[torch.Tensor]:
        """At most ``num_samples`` real samples (a seeded random subset), float32 on the CPU, in batches."""
        dataset = self.real_dataset()
        n = min(self.num_samples, len(dataset))
        if isinstance(dataset, torch.utils.data.IterableDataset):  # shards: the stream is already shuffled
            samples = iter(dataset)
            for start in range(0, n, self.batch_size):
                yield torch.stack([next(samples) for _ in range(min(self.batch_size, n - start))]).float()
            return
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(self.seed))[:n].tolist()
        for start in range(0, n, self.batch_size):
            yield torch.stack([dataset[i] for i in order[start:start + self.batch_size]]).float()

    @torch.no_grad()
    def fake_batches(self) -> Iterator[torch.Tensor]:
        """``num_samples`` generated samples, float32 on the CPU, in batches.

        An unconditional modality samples ``sample_input`` with a seeded RNG; a conditional one (no
        ``sample_input``) runs the generator on ``make_input`` of ``real_batches()``, in the same order,
        so the i-th fake is the reconstruction of the i-th real sample.
        """
        gen = torch.Generator().manual_seed(self.seed + _NOISE_SEED_OFFSET)
        if self.modality.sample_input is None:
            for real in self.real_batches():
                yield self._generate(self.modality.make_input(real, self.config, gen))
            return
        for start in range(0, self.num_samples, self.batch_size):
            n = min(self.batch_size, self.num_samples - start)
            yield self._generate(self.modality.sample_input(n, self.config, gen))

    def paired_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(real, fake)`` batches for a conditional modality: the fake is generated from the real."""
        gen = torch.Generator().manual_seed(self.seed + _NOISE_SEED_OFFSET)
        with torch.no_grad():
            for real in self.real_batches():
                yield real, self._generate(self.modality.make_input(real, self.config, gen))

    def _generate(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.generator(inputs.to(self.device)).float().cpu()


def evaluate(ctx: EvalContext, pm: pluggy.PluginManager | None = None) -> dict[str, float]:
    """Every plugin's metrics for ``ctx.modality``, merged; empty if no plugin evaluates it.

    A metric name returned by two plugins is a PluginError.
    """
    from mmgan.contract.manager import get_plugin_manager

    pm = pm or ctx.pm or get_plugin_manager()
    merged: dict[str, float] = {}
    for answer in pm.hook.mmgan_evaluate(ctx=ctx):
        for name, value in (answer or {}).items():
            if name in merged:
                raise PluginError(f"two plugins return the metric {name!r} for modality {ctx.name!r}")
            merged[name] = float(value)
    return merged


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
    from mmgan.contract.manager import get_modality, get_plugin_manager
    from mmgan.evaluation.inference import load_generator, pick_modality

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
                 last: bool = False) -> dict[str, Any]:
    """What ``mmgan eval`` reports for a run's exported generator: the settings and every plugin's metrics."""
    from mmgan import __version__
    from mmgan.checkpoint import read_export

    ctx = context_for_run(run_dir, modality, data, num_samples, batch_size, seed, device, options, pm, last)
    started = time.perf_counter()
    results = evaluate(ctx, pm)
    if not results:
        raise PluginError(f"no installed plugin computes metrics for modality {ctx.name!r}")
    _, meta = read_export(Path(run_dir), ctx.name, last)
    return {
        "run": str(run_dir), "modality": ctx.name, "step": meta.get("step"),
        "export": "best" if "selected_by" in meta else "last", "data": ctx.data,
        "num_samples": ctx.num_samples, "seed": seed, "options": {k: str(v) for k, v in ctx.options.items()},
        "metrics": results, "seconds": round(time.perf_counter() - started, 1),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "mmgan_version": __version__,
    }


def format_table(results: dict[str, float]) -> str:
    """Metrics as an aligned two-column text table."""
    width = max((len(k) for k in results), default=6)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  {'-' * 12}"]
    lines += [f"{k:<{width}}  {_format(v)}" for k, v in results.items()]
    return "\n".join(lines)


def _format(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    """Write ``report`` as JSON, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path
