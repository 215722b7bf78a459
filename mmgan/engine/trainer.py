"""``Trainer``: builds a run from its config (``build``), then loops (``step``), keeping the EMA
generator (``ema``), the run directory (``rundir``) and checkpoints (``resume``) up to date."""

from __future__ import annotations

import copy
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pluggy
import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from mmgan import checkpoint
from mmgan.config import RunConfig, own_value, validate
from mmgan.contract.manager import (
    describe_plugins,
    get_adversarial_loss,
    get_modality,
    get_plugin_manager,
    training_callbacks,
)
from mmgan.engine.best import BestExports
from mmgan.engine.build import (
    TrainingData,
    build_discriminators,
    build_generators,
    freeze_trunk,
    load_trunk,
    new_accelerator,
)
from mmgan.engine.collapse import Watchdog
from mmgan.engine.distributed import convert_sync_batchnorm, end_training, rank0_work
from mmgan.engine.ema import ema_groups, update_ema_groups
from mmgan.engine.finite import check_losses, check_weights
from mmgan.engine.optim import discriminator_optimizer, exclusive_block_owners, generator_optimizer, per_modality_groups
from mmgan.engine.outputs import RunOutputs
from mmgan.engine.rankwatch import RankWatch
from mmgan.engine.resume import load_checkpoint, noise_seed, save_checkpoint
from mmgan.engine.rundir import RunDirectory
from mmgan.engine.step import StepParts, mean_over_processes, train_step
from mmgan.engine.stop import Stopped, StopRequests, stop_requests
from mmgan.engine.tracking import RunFacts, Trackers

log = logging.getLogger("mmgan")


class Trainer(RunOutputs):
    """Builds a run from its config and trains it; ``fit()`` is the loop.

    ``G``, ``D`` (Accelerate-prepared), ``D_module`` (D unwrapped), ``ema``, ``opt_g``, ``opt_d``,
    ``modalities``, ``adversarial``, ``datasets``, ``accelerator`` and ``step`` are there for benchmarks and tests.
    """

    def __init__(self, config: RunConfig, resume: bool = False, pm: pluggy.PluginManager | None = None,
                 progress: bool = True) -> None:
        validate(config)
        self.config = config
        self.pm = pm or get_plugin_manager()
        self.run_dir = Path(config.run.out)
        self.files = RunDirectory(self.run_dir)
        if not resume:
            self.files.refuse_existing_run()
        self.progress = progress
        t = config.train
        modalities = {name: get_modality(name, self.pm) for name in config.run.modalities}
        self.accelerator = acc = new_accelerator(t, list(modalities.values()), self.run_dir)
        set_seed(config.run.seed)
        # each modality's adversarial loss: its own [<modality>] loss, else train.loss
        adversarial = {name: get_adversarial_loss(config.modalities[name].loss or t.loss, self.pm)
                       for name in config.run.modalities}

        generators = build_generators(self.pm, config)
        given = len(generators.trunk.blocks)
        # a run stopped before its first checkpoint starts again from step 0: from the other run's trunk too
        if config.run.init_trunk and not (resume and checkpoint.checkpoint_dirs(self.run_dir)):
            given = load_trunk(generators.trunk, Path(config.run.init_trunk),
                               last=config.run.init_trunk_export == "last")
        if config.run.freeze_trunk and not config.run.init_trunk:
            log.warning("run.freeze_trunk without run.init_trunk: the trunk stays at its random initialisation")
        if config.run.freeze_trunk:  # the blocks init_trunk gave; config.toml records how many
            if config.run.frozen_blocks < 0:  # a new run's (a run from before the key froze them all)
                config.run.frozen_blocks = given
            freeze_trunk(generators, config.run.frozen_blocks)
        discriminators = build_discriminators(self.pm, config)
        if t.sync_batchnorm and acc.num_processes > 1:
            # N processes of batch B then train like one process of batch N*B (docs/distributed.md)
            generators = convert_sync_batchnorm(generators)
            discriminators = convert_sync_batchnorm(discriminators)
        if t.channels_last:
            generators = generators.to(memory_format=torch.channels_last)
            discriminators = discriminators.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(generators).eval().requires_grad_(False)
        opt_g = generator_optimizer(generators, config)
        opt_d = discriminator_optimizer(discriminators, config)

        self.data = TrainingData(self.pm, config, acc)
        prepared = acc.prepare(generators, discriminators, opt_g, opt_d, *self.data.loaders)
        self.data.use_prepared(prepared[4:])
        G, D, opt_g, opt_d = prepared[:4]
        self.ema.to(acc.device)
        # All noise comes from this generator, saved in every checkpoint: resume draws the same noise.
        noise = torch.Generator().manual_seed(noise_seed(config.run.seed, acc.process_index))
        self.parts = StepParts(accelerator=acc, pm=self.pm, modalities=modalities, configs=config.modalities,
                               adversarial=adversarial, G=G, D=D, D_module=acc.unwrap_model(D), opt_g=opt_g,
                               opt_d=opt_d, noise=noise, seed=config.run.seed,
                               plugin_configs=config.plugins, steps=t.steps, schedules=per_modality_groups(config),
                               trunk_users=[n for n in config.run.modalities if config.modalities[n].trunk_depth != 0],
                               trunk_gradients=config.trunk.gradients,
                               modality_steps={n: own_value(config, n, "steps") for n in config.run.modalities})
        # the EMA decay of each modality's own parameters (stem, head, trunk FiLM and gates), the trunk's
        self._ema_groups = ema_groups(self.ema, self.accelerator.unwrap_model(self.G),
                                      {n: own_value(config, n, "ema_decay") for n in config.run.modalities},
                                      t.ema_decay, exclusive_block_owners(config))
        self.step = 0
        # seconds spent in training steps so far, over every session (no sampling, evaluation or checkpoint):
        # the compute axis of a learning curve, logged as train_s (wall clock) and train_cpu_s (the CPU time
        # of this process's threads, which a busy machine does not inflate)
        self.train_seconds = 0.0
        self.train_cpu_seconds = 0.0
        self._fixed: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._ema_ready_at = -1  # the step whose EMA weights the EMA's BatchNorm statistics describe
        self._bn_real: dict[str, torch.Tensor] = {}  # real samples a conditional modality recalibrates on
        self.selection = BestExports(self.pm, config)
        self.facts = RunFacts(self.run_dir)
        self.trackers: Trackers | None = None  # started by fit(), on the run's first written step
        self.callbacks = training_callbacks(self.pm)
        self.watchdog = Watchdog(self)
        if resume and checkpoint.checkpoint_dirs(self.run_dir):
            self.step, meta = load_checkpoint(acc, self.run_dir, self.ema, noise, config.run.seed,
                                              (self.opt_g, self.opt_d))
            self.selection.restore(meta.get("best", {}))
            saved = meta.get("callbacks", {})
            for callback in self.callbacks:
                if callback.name in saved:
                    callback.load_state_dict(saved[callback.name])
            self.watchdog.load_state_dict(meta.get("watchdog", {}))
            self.watchdog.after_resume()
            self.train_seconds = float(meta.get("train_seconds", 0.0))
            self.train_cpu_seconds = float(meta.get("train_cpu_seconds", 0.0))
        elif resume:  # stopped before its first checkpoint: start again with its own config
            log.info("%s has no checkpoint yet: training it from step 0 with its config.toml", self.run_dir)

    # ---- the parts, by the names benchmarks and tests use ------------------------------------------

    @property
    def G(self) -> Any:
        return self.parts.G

    @property
    def D(self) -> Any:
        return self.parts.D

    @property
    def D_module(self) -> Any:
        return self.parts.D_module

    @property
    def opt_g(self) -> torch.optim.Optimizer:
        return self.parts.opt_g

    @property
    def opt_d(self) -> torch.optim.Optimizer:
        return self.parts.opt_d

    @property
    def noise(self) -> torch.Generator:
        return self.parts.noise

    @property
    def modalities(self) -> dict[str, Any]:
        return self.parts.modalities

    @property
    def adversarial(self) -> dict[str, Any]:
        return self.parts.adversarial

    @property
    def datasets(self) -> dict[str, Any]:
        return self.data.datasets

    @property
    def metrics_path(self) -> Path:
        return self.files.metrics_path

    def batch_size(self, name: str) -> int:
        """The batch per process of modality ``name``: its own ``batch_size``, else ``train.batch_size``."""
        return self.data.batch_size(name)

    def batches(self) -> dict[str, Iterator[Any]]:
        """For every modality, this process's batches from the current step on, endlessly: what
        ``train_step`` takes (benchmarks and tests drive single steps with it)."""
        return {name: self.data.batches(name, self.step) for name in self.modalities}

    # ---- the loop -------------------------------------------------------------------------------

    def fit(self) -> Path:
        """Train to ``train.steps``; returns the run directory."""
        t, acc = self.config.train, self.accelerator
        if self.step >= t.steps:
            log.info("%s is already at step %d of %d; pass a larger --steps to train on", self.run_dir,
                     self.step, t.steps)
            return self.run_dir
        if acc.is_main_process:
            self.files.lock()  # one process per run directory; released when fit returns
        status = "failed"
        try:
            # a rank that dies or freezes ends the run on every rank within MMGAN_RANK_TIMEOUT, in one line
            with stop_requests() as stop, RankWatch(self.run_dir, lambda: self.step):
                run_dir = self._fit(stop)
            status = "finished"
            return run_dir
        except Stopped:
            status = "stopped"
            raise
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            if acc.is_main_process:
                self.facts.end(status, self.step)
            if self.trackers is not None:
                self.trackers.close()
            self.files.unlock()
            if status == "failed":
                self.files.discard_if_unused()  # a run that failed before writing anything leaves no directory

    def _fit(self, stop: StopRequests) -> Path:
        t, acc = self.config.train, self.accelerator
        stop.where = f"continue from the last checkpoint with: mmgan run --resume {self.run_dir}"
        with rank0_work():  # rank 0's writes and tracker start-up: the others wait in a barrier of their own
            # trackers first: one that cannot start (no wandb key, no network) fails before anything is written
            self.trackers = Trackers(acc, t.log_with, self.run_dir, self.config.to_dict())
            if acc.is_main_process:
                # what a killed run left half-written goes first: on a full disk it is the space we need
                self.files.remove_leftovers()
                self.files.write_config(self.config)
                self.files.truncate_metrics(after=self.step)
                self.facts.start({i.name: i.version for i in describe_plugins(self.pm)}, acc, self.step, t.steps)
                log.info("training %s from step %d to %d on %s x%d; writing to %s", ", ".join(self.modalities),
                         self.step, t.steps, acc.device, acc.num_processes, self.run_dir)
        # a modality whose last step is the checkpoint resumed from: a stop between that checkpoint and its
        # export would leave it unwritten for good (it is not written after its last step); write it again
        again = [n for n in self.live_modalities() if 0 < self.step == self.own_steps(n) < t.steps]
        if again:
            self.prepare_ema()
            with rank0_work():
                if acc.is_main_process:
                    for name in again:
                        self.export(name)
        batches = self.batches()
        # a bar on a terminal only: in a log file its redraws are thousands of lines (metrics.jsonl has it all)
        bar = tqdm(total=t.steps, initial=self.step, desc=self.run_dir.name, unit="step", dynamic_ncols=True,
                   disable=not (self.progress and acc.is_main_process and sys.stderr.isatty()))
        last_time, last_step = time.perf_counter(), self.step
        while self.step < t.steps:
            started, cpu_started = time.perf_counter(), time.process_time()
            losses = self.train_step(batches)
            self.train_seconds += time.perf_counter() - started
            self.train_cpu_seconds += time.process_time() - cpu_started
            self.step += 1
            bar.update(1)
            check_losses(acc, losses, self.step, self.run_dir)  # a NaN stops here, before anything is written
            record = None
            if self.step % t.log_every == 0 or self.step == t.steps:
                now = time.perf_counter()
                record = {"step": self.step, **mean_over_processes(self.accelerator, losses),
                          "steps_per_s": (self.step - last_step) / max(now - last_time, 1e-9),
                          "train_s": round(self.train_seconds, 3), "train_cpu_s": round(self.train_cpu_seconds, 3)}
                last_time, last_step = now, self.step
                if acc.is_main_process:
                    self.files.append_metrics(record)
                    self.trackers.log(record, self.step)
                bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k.endswith("/adv")}, refresh=False)
                for callback in self.callbacks:
                    callback.on_step_end(self.step, {k: v for k, v in record.items() if "/" in k})
            if self.watchdog.observe(self.step, record):  # rolled back to an earlier checkpoint
                batches = self.batches()
                bar.reset(total=t.steps)
                bar.update(self.step)
                continue
            # each modality is sampled, evaluated and exported at the intervals while it trains, and at its
            # own last step; after that, not again (the trunk it shares goes on training for the others)
            live = self.live_modalities()
            ending = [n for n in live if self.own_steps(n) == self.step]
            sample = live if self.step % t.sample_every == 0 or self.step == t.steps else ending
            evaluate = (live if self.step % t.eval_every == 0 or self.step == t.steps else ending) \
                if t.eval_every else []
            save = self.step % t.checkpoint_every == 0 or self.step == t.steps
            if sample or evaluate or save:  # a modality's last step is always in `sample`
                self.check_weights()
                if self.step == t.steps:
                    bar.close()
                    if acc.is_main_process:  # the last writes can take a while (speech: many clips)
                        log.info("step %d: writing the last %s", self.step, ", ".join(
                            w for w, on in (("samples", sample), ("evaluation", evaluate), ("checkpoint", save)) if on))
                self.prepare_ema()  # every rank: with SyncBatchNorm this is a collective
            if sample or evaluate:
                # rank 0 alone: the others wait in a barrier with a long timeout, not in a training collective
                with rank0_work():
                    if sample:
                        self.write_samples(sample)
                    if evaluate:
                        metrics = self.evaluate(evaluate)
                        for callback in self.callbacks if metrics else ():
                            callback.on_evaluation(self.step, metrics)
                    if not save and self.accelerator.is_main_process:
                        for name in ending:
                            self.export(name)
            if save:
                self.save_checkpoint()
            signum, by = stop.agreed_by(acc)
            if signum is not None:
                bar.close()
                if not save:
                    self.check_weights()
                    self.prepare_ema()
                    self.save_checkpoint()
                raise Stopped(signum, self.step, by)
        bar.close()
        acc.wait_for_everyone()
        end_training(acc)  # finishes the trackers; ends the process group, bounded in time
        self.trackers = None
        return self.run_dir

    def train_step(self, batches: dict[str, Iterator[Any]]) -> dict[str, torch.Tensor]:
        """One D update, one G update (``engine.step``), then the EMA update; the detached losses by name."""
        losses = train_step(self.parts, self.step, batches)
        update_ema_groups(self._ema_groups, self.step, self.config.train.ema_rampup, self.ema,
                          self.accelerator.unwrap_model(self.G))
        return losses

    def check_weights(self) -> None:
        """A TrainingDiverged before anything is written from non-finite weights (every rank calls it)."""
        check_weights(self.accelerator, {"generator": self.accelerator.unwrap_model(self.G),
                                         "discriminator": self.D_module, "ema": self.ema}, self.step, self.run_dir)

    def save_checkpoint(self) -> None:
        """A checkpoint of this step (every rank calls it), then the export (rank 0)."""
        with rank0_work():  # rank 0 writes while the others wait in save_checkpoint's collectives
            save_checkpoint(self.accelerator, self.run_dir, self.step, self.ema, self.noise,
                            self.config.train.keep_checkpoints, self.export,
                            {"best": self.selection.best, "train_seconds": round(self.train_seconds, 3),
                             "train_cpu_seconds": round(self.train_cpu_seconds, 3),
                             "watchdog": self.watchdog.state_dict(),
                             **({"callbacks": {c.name: c.state_dict() for c in self.callbacks}}
                                if self.callbacks else {})},
                            protect=self.watchdog.protected_step(self.step))
