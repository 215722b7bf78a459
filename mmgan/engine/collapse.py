"""The collapse watchdog's part in the training loop (``Trainer``'s): the diversity probe, and what a found
collapse does (``train.on_collapse``): a warning and a flag, a stop, or a rollback.

The signals themselves are judged in :mod:`mmgan.engine.watchdog`.
"""

from __future__ import annotations

import logging
import shutil
from typing import Any

import torch

from mmgan import checkpoint
from mmgan.contract import calls
from mmgan.engine.watchdog import MAX_ROLLBACKS, Collapse, CollapseWatch, spread
from mmgan.errors import TrainingCollapsed

log = logging.getLogger("mmgan")

#: samples in the probe's fixed batch: noise draws, or real samples for a modality whose input comes from them
PROBE_SAMPLES = {"noise": 64, "real": 8}
#: the seed offset of the probe's own RNG (never the training noise)
PROBE_SEED = 31_337


def watch_settings(config: Any) -> tuple[int, int]:
    """``(window, every)`` in steps: ``train.collapse_window`` (0: 4% of the steps, at least 100) and
    ``train.collapse_every`` (0: a quarter of the window, a multiple of ``log_every``)."""
    t = config.train
    window = t.collapse_window or max(100, t.steps // 25)
    every = t.collapse_every or max(t.log_every, (window // 4) // t.log_every * t.log_every)
    return window, every


def build_watch(config: Any, adversarial: dict[str, Any]) -> CollapseWatch:
    t = config.train
    window, every = watch_settings(config)
    names = config.run.modalities
    return CollapseWatch(t.on_collapse, window, t.collapse_diversity, t.log_every, every,
                         {m: int(getattr(config.modalities[m], "adversarial_start", 0)) for m in names},
                         {m: getattr(adversarial[m], "collapse_floor", None) for m in names},
                         {m: getattr(adversarial[m], "explosion_level", None) for m in names},
                         {m: getattr(adversarial[m], "chance_level", None) for m in names})


class Watchdog:
    """The trainer's watchdog: ``observe`` after every step (the logged losses when the step logged), and
    every ``collapse_every`` steps the diversity probe and the verdict; returns True after a rollback (the
    trainer then draws its batches again from the step it went back to)."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.watch = build_watch(trainer.config, trainer.adversarial)
        self.window, self.every = watch_settings(trainer.config)
        self.on = trainer.config.train.on_collapse != "off"
        self._probe: dict[str, tuple[torch.Tensor, float]] = {}

    def state_dict(self) -> dict[str, Any]:
        return self.watch.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.watch.load_state_dict(state)

    def protected_step(self, step: int) -> int | None:
        """Checkpoints at or before this step are the rollback's: rotation keeps the newest of them."""
        return step - self.window - self.every if self.watch.mode == "rollback" else None

    # ---- the probe ------------------------------------------------------------------------------------

    def _probe_input(self, name: str) -> tuple[torch.Tensor, float]:
        """The probe's fixed generator input for ``name`` and the spread of the real samples' features."""
        tr = self.trainer
        if name not in self._probe:
            modality, mcfg = tr.modalities[name], tr.config.modalities[name]
            gen = torch.Generator().manual_seed(tr.config.run.seed + PROBE_SEED)
            if modality.sample_input is not None:
                real = tr.data.preview(name, PROBE_SAMPLES["noise"])
                g_input = modality.sample_input(PROBE_SAMPLES["noise"], mcfg, gen)
            else:  # the same real samples every time; the generator's outputs should spread as they do
                real = tr.data.preview(name, PROBE_SAMPLES["real"])
                g_input = modality.make_input(real, mcfg, gen)
            self._probe[name] = (g_input, spread(calls.features(name, real, mcfg, tr.pm)))
        return self._probe[name]

    @torch.no_grad()
    def diversity(self, name: str) -> float:
        """The spread of the live generator's samples of the probe's inputs over the real samples' spread.

        The generator runs as it trains (BatchNorm on the probe's batch statistics), inside a forked RNG, and
        its buffers (BatchNorm's running statistics) are put back afterwards: the training run is not changed
        by being watched."""
        tr = self.trainer
        g_input, real_spread = self._probe_input(name)
        live = tr.accelerator.unwrap_model(tr.G)
        buffers = {key: value.clone() for key, value in live.named_buffers()}
        with torch.random.fork_rng(devices=[]):
            try:
                with tr.accelerator.autocast():
                    fake = live(name, g_input.to(tr.accelerator.device))
            finally:
                for key, value in live.named_buffers():
                    value.copy_(buffers[key])
        fake_spread = spread(calls.features(name, fake.float().cpu(), tr.config.modalities[name], tr.pm))
        return fake_spread / max(real_spread, 1e-12)

    # ---- each step ---------------------------------------------------------------------------------

    def observe(self, step: int, record: dict[str, float] | None) -> bool:
        if not self.on:
            return False
        tr, acc = self.trainer, self.trainer.accelerator
        if record is not None:
            self.watch.observe_losses(step, record)
        if step % self.every:
            return False
        found: list[Collapse] = []
        if acc.is_main_process:
            measured = {}
            for name in tr.live_modalities():
                ratio = self.diversity(name)
                self.watch.observe_diversity(step, name, ratio)
                measured[f"{name}/watch/diversity"] = round(ratio, 5)
            tr.files.append_metrics({"step": step, **measured})
            if tr.trackers is not None:
                tr.trackers.log(measured, step)
            found = self.watch.check(step)
        if acc.num_processes > 1:  # rank 0 judged: every rank acts on its verdict
            from accelerate.utils import broadcast_object_list

            box = [found]
            broadcast_object_list(box, from_process=0)
            found = box[0]
        if not found:
            return False
        return self.act(step, found)

    def act(self, step: int, found: list[Collapse]) -> bool:
        tr = self.trainer
        mode = self.watch.mode
        for collapse in found:
            self.watch.record(collapse)
            log.warning("%s; %s", collapse.line(), {
                "warn": "training on (train.on_collapse = warn)",
                "stop": "stopping (train.on_collapse = stop)",
                "rollback": "rolling back (train.on_collapse = rollback)"}[mode])
        if tr.accelerator.is_main_process:
            tr.facts.note("collapse", self.watch.found)
        if mode == "warn":
            return False
        saved = checkpoint.checkpoint_dirs(tr.run_dir)
        if mode == "stop":
            last = (f"its last checkpoint is step {checkpoint.checkpoint_step(saved[-1])}" if saved
                    else "no checkpoint was written")
            raise TrainingCollapsed(f"{found[0].line()}: the run stopped (train.on_collapse = stop); {last}")
        onset = min(c.onset for c in found)
        before = [d for d in saved if checkpoint.checkpoint_step(d) <= onset]
        if not before:
            raise TrainingCollapsed(f"{found[0].line()}: no checkpoint from before step {onset} to roll back to; "
                                    "the run stopped (lower the learning rates, or train.checkpoint_every)")
        if len(self.watch.rollbacks) >= MAX_ROLLBACKS:
            raise TrainingCollapsed(f"{found[0].line()}: collapsed again after {MAX_ROLLBACKS} rollbacks; the run "
                                    f"stopped; its last checkpoint is step {checkpoint.checkpoint_step(saved[-1])}")
        self.rollback(step, checkpoint.checkpoint_step(before[-1]), found)
        return True

    def rollback(self, step: int, to: int, found: list[Collapse]) -> None:
        """Back to the checkpoint of step ``to`` (the newer ones are the collapsed run's: removed), with both
        learning rates halved from there on."""
        from mmgan.engine.resume import load_checkpoint

        tr, acc = self.trainer, self.trainer.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            for newer in (d for d in checkpoint.checkpoint_dirs(tr.run_dir) if checkpoint.checkpoint_step(d) > to):
                shutil.rmtree(newer)
        acc.wait_for_everyone()
        state = self.watch.state_dict()  # the checkpoint's watchdog state is older than this rollback
        tr.step, meta = load_checkpoint(acc, tr.run_dir, tr.ema, tr.noise, tr.config.run.seed, (tr.opt_g, tr.opt_d))
        tr.selection.restore(meta.get("best", {}))
        self.watch.load_state_dict(state)
        self.watch.lr_scale *= 0.5
        self.watch.rollbacks.append({"at_step": step, "to_step": to, "signals": [c.signal for c in found],
                                     "lr_scale": self.watch.lr_scale})
        self.watch.reset()
        scale_learning_rates((tr.opt_g, tr.opt_d), self.watch.lr_scale)
        tr._ema_ready_at = -1
        if acc.is_main_process:
            tr.files.truncate_metrics(after=to)
            tr.facts.note("rollbacks", self.watch.rollbacks)
        log.warning("rolled back from step %d to the checkpoint of step %d; learning rates now x%g of the config's",
                    step, to, self.watch.lr_scale)

    def after_resume(self) -> None:
        """A resumed run keeps the learning rates its rollbacks halved."""
        if self.watch.lr_scale != 1.0:
            scale_learning_rates((self.trainer.opt_g, self.trainer.opt_d), self.watch.lr_scale)
            log.info("learning rates x%g of the config's (halved by %d collapse rollback(s))", self.watch.lr_scale,
                     len(self.watch.rollbacks))


def scale_learning_rates(optimizers: tuple[torch.optim.Optimizer, ...], scale: float) -> None:
    """Each group's rates times ``scale``; called right after a checkpoint is loaded, when they are the
    config's (``load_checkpoint`` sets them so)."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] *= scale
            if "base_lr" in group:
                group["base_lr"] *= scale
