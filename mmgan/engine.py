"""The training loop: every modality of a run, one Accelerate-driven loop.

One step = for every modality, generate a batch, then one discriminator update on the sum of all
modalities' D losses, then one generator update (D frozen) on the sum of their G losses, then an EMA
update of the generators. The whole loop is ``Trainer.fit``.

    mmgan run --plugin image                                           # one CPU or GPU
    accelerate launch --multi_gpu -m mmgan run --plugin image          # many GPUs
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pluggy
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import InitProcessGroupKwargs, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mmgan import __version__, checkpoint
from mmgan.config import RunConfig, to_toml, validate
from mmgan.data import EpochSampler, endless_batches, open_training_data
from mmgan.distributed import convert_sync_batchnorm
from mmgan.errors import CheckpointError, DataError, PluginError
from mmgan.files import atomic_path
from mmgan.losses import LossContext
from mmgan.plugins import get_adversarial_loss, get_modality, get_plugin_manager
from mmgan.shards import ShardStream
from mmgan.trunk import DiscriminatorSet, GeneratorSet, LatentTrunk

log = logging.getLogger("mmgan")


def build_generators(pm: pluggy.PluginManager, config: RunConfig) -> GeneratorSet:
    """Stems and heads from the plugins around one shared trunk."""
    trunk = LatentTrunk(config.trunk, config.run.modalities)
    parts = {}
    for name in config.run.modalities:
        built = pm.hook.mmgan_build_generator(modality=name, config=config.modalities[name], width=trunk.width)
        if built is None:
            raise PluginError(f"no plugin builds a generator for modality {name!r}")
        parts[name] = built
    return GeneratorSet(trunk, parts)


def build_discriminators(pm: pluggy.PluginManager, config: RunConfig) -> DiscriminatorSet:
    discs = {}
    for name in config.run.modalities:
        disc = pm.hook.mmgan_build_discriminator(modality=name, config=config.modalities[name])
        if disc is None:
            raise PluginError(f"no plugin builds a discriminator for modality {name!r}")
        discs[name] = disc
    return DiscriminatorSet(discs)


def _loss_terms(results: list[dict[str, torch.Tensor] | None], modality: str, kind: str) -> dict[str, torch.Tensor]:
    terms: dict[str, torch.Tensor] = {}
    for answer in results:
        for name, value in (answer or {}).items():
            if name in terms or name == "adv":
                raise PluginError(f"two plugins return the {kind} loss term {name!r} for modality {modality!r}")
            terms[name] = value
    return terms


class Trainer:
    """Builds a run from its config and trains it; ``fit()`` is the loop."""

    def __init__(self, config: RunConfig, resume: bool = False, pm: pluggy.PluginManager | None = None,
                 progress: bool = True) -> None:
        validate(config)
        self.config = config
        self.pm = pm or get_plugin_manager()
        self.run_dir = Path(config.run.out)
        if not resume and ((self.run_dir / "metrics.jsonl").exists() or checkpoint.checkpoint_dirs(self.run_dir)):
            raise CheckpointError(f"{self.run_dir} already holds a run; resume it (mmgan run --resume "
                                  f"{self.run_dir}) or choose another --out")
        self.progress = progress
        t = config.train
        if AcceleratorState._shared_state:
            # Accelerate keeps one state per process and refuses a second Accelerator with another
            # precision; a process that runs several trainings (tests, notebooks, benchmarks) must reset
            # it. The process group (PartialState) is kept.
            AcceleratorState._reset_state(reset_partial_state=False)
        # rank 0 alone samples and evaluates while the others wait at the next collective: allow it an hour
        # (NCCL's default of 10 minutes would kill a run during a long periodic evaluation)
        self.accelerator = Accelerator(mixed_precision=t.mixed_precision or None,
                                       kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(hours=1))])
        set_seed(config.run.seed)
        self.modalities = {name: get_modality(name, self.pm) for name in config.run.modalities}
        # each modality's adversarial loss: its own [<modality>] loss, else train.loss
        self.adversarial = {name: get_adversarial_loss(config.modalities[name].loss or t.loss, self.pm)
                            for name in config.run.modalities}

        generators = build_generators(self.pm, config)
        if config.run.init_trunk and not resume:
            load_trunk(generators.trunk, Path(config.run.init_trunk))
        discriminators = build_discriminators(self.pm, config)
        if t.sync_batchnorm and self.accelerator.num_processes > 1:
            # N processes of batch B then train like one process of batch N*B (docs/distributed.md)
            generators = convert_sync_batchnorm(generators)
            discriminators = convert_sync_batchnorm(discriminators)
        if t.channels_last:
            generators = generators.to(memory_format=torch.channels_last)
            discriminators = discriminators.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(generators).eval().requires_grad_(False)
        opt_g = torch.optim.Adam(generators.parameters(), lr=t.lr_g, betas=(t.beta1, t.beta2))
        opt_d = torch.optim.Adam(discriminators.parameters(), lr=t.lr_d, betas=(t.beta1, t.beta2))

        acc = self.accelerator
        self.datasets, self.samplers, loaders, self.streams = {}, {}, [], {}
        for name in config.run.modalities:
            mcfg = config.modalities[name]
            dataset = open_training_data(self.pm, name, mcfg, config.run.seed, acc.process_index, acc.num_processes,
                                         t.num_workers, t.shuffle_buffer)
            batch = self.batch_size(name)
            if len(dataset) < batch * acc.num_processes:
                raise DataError(f"data source {mcfg.data!r} holds {len(dataset)} {name} samples, fewer than one "
                                f"batch of {batch} per process; add data or lower --batch-size")
            self.datasets[name] = dataset
            if isinstance(dataset, ShardStream):
                # split by rank and worker in the stream itself: Accelerate must not shard it again
                self.streams[name] = DataLoader(dataset, batch_size=batch, drop_last=True,
                                                num_workers=t.num_workers, pin_memory=acc.device.type == "cuda")
                continue
            sampler = EpochSampler(len(dataset), config.run.seed)
            loaders.append(DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=True,
                                      num_workers=t.num_workers, persistent_workers=t.num_workers > 0))
            self.samplers[name] = sampler
        prepared = acc.prepare(generators, discriminators, opt_g, opt_d, *loaders)
        self.G, self.D, self.opt_g, self.opt_d = prepared[:4]
        self.loaders = dict(zip(self.samplers, prepared[4:], strict=True))
        self.D_module = self.accelerator.unwrap_model(self.D)  # the same parameters, without a DDP wrapper
        self.ema.to(self.accelerator.device)

        # All noise comes from this generator, saved in every checkpoint: resume draws the same noise.
        self.noise = torch.Generator().manual_seed(config.run.seed * 7919 + 1 + acc.process_index)
        self.step = 0
        self._fixed: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        if resume:
            self._load_checkpoint()

    # ---- the loop -------------------------------------------------------------------------------

    def fit(self) -> Path:
        """Train to ``train.steps``; returns the run directory."""
        t, acc = self.config.train, self.accelerator
        if self.step >= t.steps:
            log.info("%s is already at step %d of %d; pass a larger --steps to train on", self.run_dir,
                     self.step, t.steps)
            return self.run_dir
        if acc.is_main_process:
            self._write_config()
            self._truncate_metrics(after=self.step)
            checkpoint.remove_staging(self.run_dir)
            log.info("training %s from step %d to %d on %s x%d; writing to %s", ", ".join(self.modalities),
                     self.step, t.steps, acc.device, acc.num_processes, self.run_dir)
        batches = self.batches()
        bar = tqdm(total=t.steps, initial=self.step, desc=self.run_dir.name, unit="step", dynamic_ncols=True,
                   disable=not (self.progress and acc.is_main_process))
        last_time, last_step = time.perf_counter(), self.step
        while self.step < t.steps:
            losses = self.train_step(batches)
            self.step += 1
            bar.update(1)
            if self.step % t.log_every == 0 or self.step == t.steps:
                now = time.perf_counter()
                record = {"step": self.step, **self._mean_over_processes(losses),
                          "steps_per_s": (self.step - last_step) / max(now - last_time, 1e-9)}
                last_time, last_step = now, self.step
                self._check_finite(record)
                if acc.is_main_process:
                    self._append_metrics(record)
                bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k.endswith("/adv")}, refresh=False)
            if self.step % t.sample_every == 0 or self.step == t.steps:
                self.write_samples()
            if t.eval_every and (self.step % t.eval_every == 0 or self.step == t.steps):
                self.evaluate()
            if self.step % t.checkpoint_every == 0 or self.step == t.steps:
                self.save_checkpoint()
        bar.close()
        acc.wait_for_everyone()
        acc.end_training()
        return self.run_dir

    def train_step(self, batches: dict[str, Iterator[Any]]) -> dict[str, torch.Tensor]:
        """One D update and one G update over all modalities; returns the detached losses by name.

        G and D each run once through their (DDP-)wrapped module per step, on every modality at once, so
        every parameter takes part in each backward. Extra calls (loss-term hooks, the G step's D) use the
        unwrapped modules: their gradients still reach the same parameters and are reduced with the rest.
        """
        losses: dict[str, torch.Tensor] = {}
        reals, inputs = {}, {}
        for name, modality in self.modalities.items():
            reals[name] = next(batches[name])
            inputs[name] = modality.make_input(reals[name], self.config.modalities[name], self.noise)
            inputs[name] = inputs[name].to(reals[name].device)
        # each fake is generated once and reused in the G step
        fakes = self.G(inputs)

        # discriminator step: real vs detached fakes
        self.D.requires_grad_(True)
        d_plain = self.D_module
        outputs = self.D({name: [reals[name], fakes[name].detach()] for name in self.modalities})
        d_total = 0.0
        for name in self.modalities:
            mcfg = self.config.modalities[name]
            d_real, d_fake = outputs[name]
            adv = self.adversarial[name].d_loss(d_real, d_fake)
            ctx = LossContext(name, mcfg, self.step, reals[name], fakes[name].detach(), inputs[name], d_fake,
                              lambda x, name=name: d_plain(name, x), d_real=d_real)
            terms = _loss_terms(self.pm.hook.mmgan_discriminator_loss_terms(ctx=ctx), name, "discriminator")
            d_total = d_total + adv + sum(terms.values())
            losses[f"{name}/d/adv"] = adv.detach()
            losses.update({f"{name}/d/{k}": v.detach() for k, v in terms.items()})
        self.opt_d.zero_grad(set_to_none=True)
        self.accelerator.backward(d_total)
        self.opt_d.step()

        # generator step: D frozen so no gradient reaches (or lingers in) its parameters, and called
        # unwrapped: under DDP a wrapped module whose parameters get no gradient stalls the reducer.
        self.D.requires_grad_(False)
        g_total = 0.0
        for name in self.modalities:
            mcfg = self.config.modalities[name]
            d_fake = d_plain(name, fakes[name])
            adv = self.adversarial[name].g_loss(d_fake)
            ctx = LossContext(name, mcfg, self.step, reals[name], fakes[name], inputs[name], d_fake,
                              lambda x, name=name: d_plain(name, x))
            terms = _loss_terms(self.pm.hook.mmgan_generator_loss_terms(ctx=ctx), name, "generator")
            g_total = g_total + adv + sum(terms.values())
            losses[f"{name}/g/adv"] = adv.detach()
            losses.update({f"{name}/g/{k}": v.detach() for k, v in terms.items()})
        self.opt_g.zero_grad(set_to_none=True)
        self.accelerator.backward(g_total)
        self.opt_g.step()
        self.D.requires_grad_(True)
        self._update_ema()
        return losses

    def batches(self) -> dict[str, Iterator[Any]]:
        """For every modality, this process's batches from the current step on, endlessly: what
        ``train_step`` takes (benchmarks and tests drive single steps with it)."""
        return {name: self._batches(name) for name in self.modalities}

    def _batches(self, name: str) -> Iterator[Any]:
        if name in self.streams:
            loader = self.streams[name]
            loader.dataset.set_start(self.step, self.batch_size(name))
            device = self.accelerator.device
            return (batch.to(device, non_blocking=True) for batch in loader)
        return endless_batches(self.accelerator, self.loaders[name], self.samplers[name], self.step)

    def batch_size(self, name: str) -> int:
        """The batch per process of modality ``name``: its own ``batch_size``, else ``train.batch_size``."""
        return self.config.modalities[name].batch_size or self.config.train.batch_size

    def _mean_over_processes(self, losses: dict[str, torch.Tensor]) -> dict[str, float]:
        """The logged losses, averaged over all processes (every process calls this at the same steps)."""
        if not losses:
            return {}
        values = torch.stack([v.float() for v in losses.values()])
        if self.accelerator.num_processes > 1:
            values = self.accelerator.reduce(values, reduction="mean")
        return dict(zip(losses, values.tolist(), strict=True))

    # ---- EMA, samples, export -------------------------------------------------------------------

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = ema_decay(self.step, self.config.train.ema_decay, self.config.train.ema_rampup)
        live = self.accelerator.unwrap_model(self.G)
        ema_params, live_params = list(self.ema.parameters()), list(live.parameters())
        torch._foreach_lerp_(ema_params, live_params, 1 - decay)
        for ema_buf, buf in zip(self.ema.buffers(), live.buffers(), strict=True):
            ema_buf.copy_(buf)

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
        dataset = self.datasets[name]
        if isinstance(dataset, ShardStream):
            real = torch.stack(dataset.preview(min(n, len(dataset))))
        else:
            real = torch.stack([dataset[i] for i in range(min(n, len(dataset)))])
        if modality.sample_input is not None:
            return modality.sample_input(n, mcfg, gen), real
        return modality.make_input(real, mcfg, gen), real

    @torch.no_grad()
    def write_samples(self) -> None:
        if not self.accelerator.is_main_process:
            return
        for name in self.modalities:
            g_input, real = self.fixed_inputs(name)
            with self.accelerator.autocast():
                fake = self.ema(name, g_input.to(self.accelerator.device))
            path = self.run_dir / "samples" / name / f"step_{self.step:06d}"
            self.pm.hook.mmgan_write_samples(modality=name, samples=fake.float().cpu(), path=path,
                                             config=self.config.modalities[name], real=real)

    def evaluate(self) -> dict[str, float]:
        """The plugins' metrics of the EMA generators (rank 0), logged as ``<modality>/eval/<metric>``."""
        from mmgan.errors import MMGANError
        from mmgan.evaluation import EvalContext, ModalityGenerator, evaluate

        if not self.accelerator.is_main_process:
            return {}
        t, record = self.config.train, {}
        for name, modality in self.modalities.items():
            mcfg = self.config.modalities[name]
            ctx = EvalContext(modality=modality, config=mcfg, generator=ModalityGenerator(self.ema, name),
                              data=mcfg.data,
                              num_samples=mcfg.eval_samples or min(t.eval_samples, modality.eval_samples),
                              batch_size=t.batch_size,
                              seed=self.config.run.seed, device=self.accelerator.device, pm=self.pm)
            try:
                record.update({f"{name}/eval/{k}": v for k, v in evaluate(ctx, self.pm).items()})
            # a setting too small for a metric, or data it cannot read, must not end a long run
            except MMGANError as exc:
                log.warning("step %d: %s evaluation skipped: %s", self.step, name, exc)
        if record:
            self._append_metrics({"step": self.step, **record})
        return record

    def export(self) -> None:
        """Write each modality's EMA generator as safetensors + JSON for ``mmgan generate``."""
        for name in self.modalities:
            meta = {"mmgan_version": __version__, "modality": name, "step": self.step,
                    "config": asdict(self.config.modalities[name]), "trunk": asdict(self.config.trunk)}
            checkpoint.export_generator(self.run_dir / "export", name, self.ema.modality_state_dict(name), meta)

    # ---- checkpoints ----------------------------------------------------------------------------

    def save_checkpoint(self) -> None:
        """Save resumable state under a staging name, then rename: the previous one stays valid until then."""
        acc = self.accelerator
        staging = checkpoint.staging_dir(self.run_dir, self.step)
        acc.wait_for_everyone()
        acc.save_state(str(staging))
        # each rank draws its own noise: keep every rank's generator state, one row per rank
        noise_states = self.noise.get_state()[None]
        if acc.num_processes > 1:
            noise_states = acc.gather(noise_states.to(acc.device)).cpu()
        acc.wait_for_everyone()  # every rank's RNG file is in the staging directory before the rename
        if acc.is_main_process:
            tensors = {f"ema.{k}": v for k, v in self.ema.state_dict().items()}
            tensors["noise_rng"] = noise_states
            checkpoint.write_extra_state(staging, self.step, tensors, {"mmgan_version": __version__})
            checkpoint.publish_checkpoint(self.run_dir, self.step, self.config.train.keep_checkpoints)
            self.export()
        acc.wait_for_everyone()

    def _load_checkpoint(self) -> None:
        directory = checkpoint.latest_checkpoint(self.run_dir)
        step, tensors, _ = checkpoint.read_extra_state(directory)
        self.step = step
        try:
            self.accelerator.load_state(str(directory))
            self.ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
            # every rank saved its own RNGs in Accelerate's files, and its noise RNG as one row here
            self._restore_noise(tensors["noise_rng"])
        except Exception as exc:  # whatever a damaged file raises (safetensors, unpickling, shapes), one line
            first = (str(exc).splitlines() or [""])[0]
            raise CheckpointError(f"checkpoint {directory} cannot be loaded: {type(exc).__name__}: {first}") from None
        self.step = step
        log.info("resumed %s from step %d", self.run_dir, step)

    def _restore_noise(self, states: torch.Tensor) -> None:
        acc = self.accelerator
        states = states if states.dim() == 2 else states[None]
        if states.shape[0] == acc.num_processes:
            # a copy, not a row view: Generator.set_state reads a view's storage from its start
            self.noise.set_state(states[acc.process_index].clone())
            return
        # another process count than the run was saved with: fresh, distinct noise streams per rank
        if acc.is_main_process:
            log.warning("checkpoint was written by %d process(es), resuming with %d: noise and data order "
                        "differ from an unbroken run", states.shape[0], acc.num_processes)
        self.noise.manual_seed(self.config.run.seed * 7919 + 1 + acc.process_index + 1_000_003 * (self.step + 1))

    # ---- files ----------------------------------------------------------------------------------

    def _write_config(self) -> None:
        with atomic_path(self.run_dir / "config.toml") as tmp:
            tmp.write_text(to_toml(self.config), encoding="utf-8")

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    def _append_metrics(self, record: dict[str, float]) -> None:
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        with self.metrics_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _truncate_metrics(self, after: int) -> None:
        """Drop records past the resumed step, so a resumed run's log reads like an unbroken run's."""
        if not self.metrics_path.exists():
            return
        kept = [line for line in self.metrics_path.read_text(encoding="utf-8").splitlines()
                if _logged_step(line) <= after]
        with atomic_path(self.metrics_path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def _check_finite(self, record: dict[str, float]) -> None:
        bad = [k for k, v in record.items() if not math.isfinite(v)]
        if bad:
            log.warning("step %d: non-finite losses %s; lower the learning rate or try train.loss=hinge",
                        self.step, ", ".join(bad))


def load_trunk(trunk: LatentTrunk, run_dir: Path) -> None:
    """Initialise ``trunk`` from another run's exported generator: its blocks, and the FiLM of every
    modality both runs have (a new modality keeps its identity FiLM)."""
    found = checkpoint.exported_modalities(run_dir)
    if not found:
        raise CheckpointError(f"--init-trunk {run_dir}: no exported generator there (expected export/*.safetensors)")
    state, meta = checkpoint.read_export(run_dir, found[0])
    theirs = meta.get("trunk", {})
    ours = asdict(trunk.config)
    if any(theirs.get(key) != value for key, value in ours.items()):
        raise CheckpointError(f"--init-trunk {run_dir}: its trunk {theirs} does not fit this run's trunk {ours}; "
                              "set the same [trunk] values")
    for name in found[1:]:
        state.update(checkpoint.read_export(run_dir, name)[0])
    weights = {key[len("trunk."):]: value for key, value in state.items() if key.startswith("trunk.")}
    weights = {key: value for key, value in weights.items()
               if not key.startswith("film.") or key[len("film."):] in trunk.film}
    try:
        missing, _ = trunk.load_state_dict(weights, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"--init-trunk {run_dir}: {str(exc).splitlines()[0]}") from None
    if any(not key.startswith("film.") for key in missing):
        raise CheckpointError(f"--init-trunk {run_dir}: the export lacks trunk weights {sorted(missing)[:3]}")
    log.info("trunk initialised from %s (modalities %s)", run_dir, ", ".join(found))


def _logged_step(line: str) -> float:
    """The step of a metrics.jsonl line; infinity for a line a crash cut short (it is dropped)."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def ema_decay(step: int, cap: float, rampup: float) -> float:
    """EMA decay at ``step``: the half-life grows with training (``rampup`` of the steps so far, as in
    StyleGAN2-ADA), capped at ``cap``; without it, early EMA weights average random initialisations."""
    if rampup <= 0:
        return cap
    half_life = max(rampup * (step + 1), 1e-8)
    return min(cap, 0.5 ** (1 / half_life))
