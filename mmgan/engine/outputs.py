"""What a run writes besides checkpoints: samples, evaluations and exported generators of its EMA
generator (``Trainer``'s part for them), and when each modality gets them."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from mmgan import __version__, checkpoint
from mmgan.contract import calls
from mmgan.engine.ema import batchnorm_layers, recalibrate_batchnorm
from mmgan.engine.resume import noise_seed
from mmgan.files import writing

log = logging.getLogger("mmgan")


class RunOutputs:
    """Samples, evaluation and export of the EMA generator; mixed into ``Trainer``, whose attributes
    (``config``, ``ema``, ``modalities``, ``parts``, ``selection``, ``step``...) it reads.

    In a run of several modalities each one is written at the intervals while it trains and at its own
    last step, and not after it: the trunk it shares goes on training for the others, so what a finished
    modality's export holds is what it was at its last step.
    """

    config: Any
    ema: Any
    parts: Any
    step: int
    run_dir: Path

    @torch.no_grad()
    def prepare_ema(self) -> None:
        """Make the EMA generator ready to sample, evaluate and export: recompute its BatchNorm statistics
        for its own weights (``train.ema_bn_batches`` batches per modality; once per step).

        Every process must call it at the same steps (SyncBatchNorm all-reduces the statistics). The
        inputs come from an RNG of their own, the same at every call, so training noise, data order and
        exact resume are untouched.
        """
        n = self.config.train.ema_bn_batches
        if n <= 0 or self._ema_ready_at == self.step:
            return
        self._ema_ready_at = self.step
        acc = self.accelerator
        for name, modality in self.modalities.items():
            layers = batchnorm_layers(self.ema.stems[name]) + batchnorm_layers(self.ema.heads[name])
            if not layers:
                continue
            mcfg, batch = self.config.modalities[name], self.batch_size(name)
            gen = torch.Generator().manual_seed(noise_seed(self.config.run.seed, acc.process_index) + 2_000_003)
            if modality.sample_input is not None:
                inputs = (modality.sample_input(batch, mcfg, gen) for _ in range(n))
            else:  # a conditional modality: inputs from real samples, the same ones every time
                if name not in self._bn_real:  # decoded once per run, not at every sample step
                    self._bn_real[name] = self.data.preview(name, batch * n)
                real = self._bn_real[name]
                inputs = (modality.make_input(chunk, mcfg, gen) for chunk in real.split(batch))
            with acc.autocast():
                recalibrate_batchnorm(lambda x, name=name: self.ema(name, x.to(acc.device)), layers, inputs)

    def fixed_inputs(self, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The same generator inputs at every sample step (and the real samples they come from).

        Built once per run: rendering or decoding the real samples again at every sample step is waste.
        """
        if name not in self._fixed:
            self._fixed[name] = self._build_fixed_inputs(name)
        return self._fixed[name]

    def _build_fixed_inputs(self, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        modality, mcfg, n = self.modalities[name], self.config.modalities[name], self.config.train.num_samples
        gen = torch.Generator().manual_seed(self.config.run.seed + 20_151_119)
        real = self.data.preview(name, n)
        if modality.sample_input is not None:
            return modality.sample_input(n, mcfg, gen), real
        return modality.make_input(real, mcfg, gen), real

    def own_steps(self, name: str) -> int:
        """Modality ``name``'s last step: its own ``steps`` in a run of several, else the loop's."""
        return self.parts.modality_steps.get(name, self.parts.steps)

    def live_modalities(self) -> list[str]:
        """The modalities whose last step is not behind the loop's: the ones still sampled, evaluated and
        exported. A finished one keeps what was written at its own last step."""
        return [name for name in self.modalities if self.step <= self.own_steps(name)]

    @torch.no_grad()
    def write_samples(self, names: list[str] | None = None) -> None:
        """Samples of the EMA generators of ``names`` (every modality by default) from the fixed inputs."""
        if not self.accelerator.is_main_process:
            return
        for name in self.modalities if names is None else names:
            g_input, real = self.fixed_inputs(name)
            with self.accelerator.autocast():
                fake = self.ema(name, g_input.to(self.accelerator.device))
            path = self.run_dir / "samples" / name / f"step_{self.step:06d}"
            with writing(path):  # a plugin's writer that meets a full disk: one line naming the path
                written = calls.write_samples(name, fake.float().cpu(), path, self.config.modalities[name], real,
                                              self.pm)
            if self.trackers is not None:
                self.trackers.log_samples(name, [Path(p) for p in written or []], self.step)

    def evaluate(self, names: list[str] | None = None) -> dict[str, float]:
        """The plugins' metrics of the EMA generators of ``names`` (every modality by default; rank 0),
        logged as ``<modality>/eval/<metric>``."""
        from mmgan.errors import MMGANError
        from mmgan.evaluation.scoring import EvalContext, ModalityGenerator, evaluate, numbers

        if not self.accelerator.is_main_process:
            return {}
        t, record = self.config.train, {}
        for name in self.modalities if names is None else names:
            modality, mcfg = self.modalities[name], self.config.modalities[name]
            ctx = EvalContext(modality=modality, config=mcfg, generator=ModalityGenerator(self.ema, name),
                              data=mcfg.eval_data or mcfg.data,
                              num_samples=mcfg.eval_samples or min(t.eval_samples, modality.eval_samples),
                              batch_size=t.batch_size,
                              seed=self.config.run.seed, device=self.accelerator.device, pm=self.pm)
            try:
                record.update({f"{name}/eval/{k}": v for k, v in numbers(evaluate(ctx, self.pm)).items()})
            # a setting too small for a metric, or data it cannot read, must not end a long run
            except MMGANError as exc:
                log.warning("step %d: %s evaluation skipped: %s", self.step, name, exc)
        if record:
            self.files.append_metrics({"step": self.step, **record})
            if self.trackers is not None:
                self.trackers.log(record, self.step)
        for name in self.selection.improved(self.step, record):
            self.export(name, best=True)
        return record

    def export(self, only: str | None = None, best: bool = False) -> None:
        """Write each modality's (or ``only``'s) EMA generator as safetensors + JSON for ``mmgan generate``:
        to ``export/``, or with ``best`` to ``export/best/`` with the score that selected it. By default
        the modalities still training (or at their last step): a finished one keeps its last export."""
        for name in [only] if only else self.live_modalities():
            meta = {"mmgan_version": __version__, "modality": name, "step": self.step,
                    "config": asdict(self.config.modalities[name]), "trunk": asdict(self.config.trunk)}
            directory = self.run_dir / "export"
            if best:
                meta["selected_by"] = self.selection.best[name]
                directory = directory / checkpoint.BEST_DIR
            checkpoint.export_generator(directory, name, self.ema.modality_state_dict(name), meta)
