"""Building a run: its accelerator, its networks (stems and heads around one trunk) and its data."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pluggy
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import InitProcessGroupKwargs, ProjectConfiguration
from torch.utils.data import DataLoader

from mmgan import checkpoint
from mmgan.config import RunConfig, TrainConfig, legacy_trunk_values
from mmgan.config.sizes import Footprint, Part, build_on_meta, check_memory, footprint, size_settings
from mmgan.contract import calls
from mmgan.contract.modality import Modality, ModalityConfig
from mmgan.data.loading import EpochSampler, endless_batches, open_training_data
from mmgan.data.shards import ShardStream
from mmgan.engine.distributed import LONG_WAIT
from mmgan.engine.precision import resolve_precision
from mmgan.errors import CheckpointError, ConfigError, DataError, PluginError
from mmgan.trunk import DiscriminatorSet, GeneratorSet, LatentTrunk, TrunkConfig

log = logging.getLogger("mmgan")


def new_accelerator(train: TrainConfig, modalities: Sequence[Modality] = (),
                    run_dir: Path | None = None) -> Accelerator:
    """The run's Accelerator, with its precision resolved from ``train.mixed_precision``
    (``mmgan.engine.precision``: ``auto`` picks bf16 where it is native and ``modalities`` allow it) and its
    trackers (``train.log_with``) writing under ``run_dir/trackers``."""
    if AcceleratorState._shared_state:
        # Accelerate keeps one state per process and refuses a second Accelerator with another
        # precision; a process that runs several trainings (tests, notebooks, benchmarks) must reset
        # it. The process group (PartialState) is kept.
        AcceleratorState._reset_state(reset_partial_state=False)
    # start-up (rendezvous, DDP's first broadcast, loading a checkpoint) may take long: an hour. The training
    # loop shortens it and brackets rank 0's own work (mmgan.engine.distributed.RankWatch, rank0_work)
    handlers = [InitProcessGroupKwargs(timeout=LONG_WAIT)]
    precision, why = resolve_precision(train.mixed_precision, modalities, likely_device())
    project = ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "trackers")) if run_dir else None
    acc = Accelerator(mixed_precision=precision, kwargs_handlers=handlers, log_with=list(train.log_with) or None,
                      project_config=project)
    if acc.is_main_process:
        log.info("training precision %s (%s)", acc.mixed_precision, why)
    return acc


def likely_device() -> torch.device:
    """The device Accelerate will pick for a single process (under ``accelerate launch`` the launcher's
    precision decides anyway). Found without creating Accelerate's process state, which must be created
    by the Accelerator itself, with the launcher's settings."""
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def build_generators(pm: pluggy.PluginManager, config: RunConfig) -> GeneratorSet:
    """Stems and heads from the plugins around one shared trunk, once ``check_sizes`` has found the run's
    sizes in range and its networks within the memory there is (the first thing a run allocates)."""
    check_sizes(pm, config)
    return _generators(pm, config)


def _generators(pm: pluggy.PluginManager, config: RunConfig) -> GeneratorSet:
    trunk = LatentTrunk(config.trunk, config.run.modalities)
    parts = {}
    for name in config.run.modalities:
        built = calls.build_generator(name, config.modalities[name], trunk.width, pm)
        if built is None:
            raise PluginError(f"no plugin builds a generator for modality {name!r}")
        parts[name] = built
    generators = GeneratorSet(trunk, parts, {name: config.modalities[name].trunk_depth for name in parts})
    # blocks no modality of this run goes through stay as they are (kept for transfer to a deeper one);
    # frozen, so neither Adam nor DDP waits for gradients that cannot come
    for index in generators.unused_trunk_blocks():
        generators.trunk.blocks[index].requires_grad_(False)
    return generators


def freeze_trunk(generators: GeneratorSet, blocks: int) -> None:
    """Transfer without fine-tuning (``run.freeze_trunk``): the trunk's first ``blocks`` blocks stay as they
    are; the others, each modality's FiLM and gates train."""
    generators.trunk.blocks[:blocks].requires_grad_(False)


def build_discriminators(pm: pluggy.PluginManager, config: RunConfig) -> DiscriminatorSet:
    """Every modality's discriminator from its plugin, in one module."""
    discs = {}
    for name in config.run.modalities:
        disc = calls.build_discriminator(name, config.modalities[name], pm)
        if disc is None:
            raise PluginError(f"no plugin builds a discriminator for modality {name!r}")
        discs[name] = disc
    return DiscriminatorSet(discs)


def run_device() -> torch.device:
    """Where this process trains: its Accelerator's device once the run has one, else the CPU (where
    ``build_generators`` builds)."""
    return PartialState().device if PartialState._shared_state else torch.device("cpu")


def training_parts(pm: pluggy.PluginManager, config: RunConfig, on_host: bool = False) -> list[Part] | None:
    """What training will hold of the trunk and of each modality's stem, head and discriminator: weights,
    gradients and Adam's moments, and the EMA generator's weights (``mmgan.config.sizes``); with ``on_host``, the
    weights of G, D and the EMA generator alone, as the host holds them before they move to an accelerator.
    Counted on networks built on the meta device; None where they cannot be built there."""
    built = build_on_meta(lambda: (_generators(pm, config), build_discriminators(pm, config)))
    if built is None:
        return None
    generators, discriminators = built
    pieces = [("trunk", size_settings("trunk", config.trunk), footprint(generators, ["trunk."]), Footprint())]
    for name in config.run.modalities:
        pieces.append((name, size_settings(name, config.modalities[name], ModalityConfig),
                       footprint(generators, [f"stems.{name}.", f"heads.{name}."]),
                       footprint(discriminators, [f"discriminators.{name}."])))
    if on_host:
        return [Part(name, keys, 2 * g.inference + d.inference) for name, keys, g, d in pieces]
    parts = [Part(name, keys, g.training(ema=True) + d.training()) for name, keys, g, d in pieces]
    # Adam's update (torch's foreach form) holds a temporary the size of its parameters: G's, then D's. Measured
    # with benchmarks/memory_estimate.py, it was most of what the estimate missed (the batch's activations, not
    # counted, are the rest)
    update = max(sum(g.trainable for _, _, g, _ in pieces), sum(d.trainable for _, _, _, d in pieces))
    return [*parts, Part("the optimizer's update", "", update)]


def check_sizes(pm: pluggy.PluginManager, config: RunConfig) -> None:
    """A one-line ConfigError for a trunk size out of its range (``TrunkConfig.RANGES``; a modality's
    sizes are checked by its config's ``validate``), or for networks that training could not hold in the
    memory free on the run's device (and, for an accelerator, on the host that builds them first)."""
    try:
        config.trunk.validate()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    device = run_device()
    parts = training_parts(pm, config)
    if parts is None:
        return
    check_memory(parts, device, "training (weights, gradients, Adam and its update, the EMA generator)")
    if device.type != "cpu":
        check_memory(training_parts(pm, config, on_host=True) or [], torch.device("cpu"),
                     "building the networks on the host")


def load_trunk(trunk: LatentTrunk, run_dir: Path, last: bool = False) -> int:
    """Initialise ``trunk`` from another run's exported generator (its best export unless ``last``): its
    blocks, and the FiLM of every modality both runs have (a new modality keeps its identity FiLM).

    The trunks must agree on every shape key but ``depth``: a deeper trunk gives its first blocks (image
    goes through 1 of 2 blocks, speech through 8: each run's trunk seeds the other), a shallower one fills
    the first blocks and the rest keep their initialisation (identity residuals). Logged either way.
    Returns the number of blocks it gave.
    """
    found = checkpoint.exported_modalities(run_dir)
    if not found:
        raise CheckpointError(f"--init-trunk {run_dir}: no exported generator there (expected export/*.safetensors)")
    state, meta = checkpoint.read_export(run_dir, found[0], last)
    theirs = meta.get("trunk", {})
    theirs = {**theirs, **legacy_trunk_values(theirs)}  # keys it does not name: their values before they existed
    ours = {key: value for key, value in asdict(trunk.config).items() if key in TrunkConfig.SHAPE_KEYS}
    if any(theirs.get(key) != value for key, value in ours.items() if key != "depth"):
        raise CheckpointError(f"--init-trunk {run_dir}: its trunk {theirs} does not fit this run's trunk {ours}; "
                              "set the same [trunk] values (all but depth)")
    for name in found[1:]:
        state.update(checkpoint.read_export(run_dir, name, last)[0])
    depth = min(int(theirs.get("depth", 0)), trunk.config.depth)
    weights = {}
    for key, value in state.items():
        if not key.startswith("trunk."):
            continue
        key = key[len("trunk."):]
        if key.startswith("blocks.") and int(key.split(".")[1]) >= depth:
            continue  # a block this trunk does not have
        if key.startswith(("film.", "gate.")):
            if key.split(".", 1)[1] not in trunk.film:
                continue  # a modality this run does not train
            mine = trunk.state_dict()[key].clone()
            mine[:depth] = value[:depth]  # per block: the blocks both trunks have
            value = mine
        weights[key] = value
    try:
        missing, _ = trunk.load_state_dict(weights, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"--init-trunk {run_dir}: {str(exc).splitlines()[0]}") from None
    lacking = [key for key in missing if not key.startswith(("film.", "gate."))
               and not (key.startswith("blocks.") and int(key.split(".")[1]) >= depth)]
    if lacking:
        raise CheckpointError(f"--init-trunk {run_dir}: the export lacks trunk weights {sorted(lacking)[:3]}")
    note = "" if depth == trunk.config.depth == theirs.get("depth") else (
        f"; its first {depth} of this run's {trunk.config.depth} blocks (it has {theirs.get('depth')})")
    log.info("trunk initialised from %s (modalities %s)%s", run_dir, ", ".join(found), note)
    return depth


class TrainingData:
    """Each modality's real data for this process: a dataset, and a loader over it.

    Map-style datasets get an :class:`EpochSampler` and a loader that ``accelerator.prepare`` shards by
    rank (hand ``loaders`` to ``prepare``, then the prepared ones to :meth:`use_prepared`); WebDataset
    shard streams split themselves by rank and worker and are never prepared.
    """

    def __init__(self, pm: pluggy.PluginManager, config: RunConfig, accelerator: Accelerator) -> None:
        self.config, self.accelerator = config, accelerator
        t = config.train
        self.datasets: dict[str, Any] = {}
        self.samplers: dict[str, EpochSampler] = {}
        self.streams: dict[str, DataLoader] = {}
        self.loaders: list[DataLoader] = []
        acc = accelerator
        for name in config.run.modalities:
            mcfg = config.modalities[name]
            dataset = open_training_data(pm, name, mcfg, config.run.seed, acc.process_index, acc.num_processes,
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
            self.loaders.append(DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=True,
                                           num_workers=t.num_workers, persistent_workers=t.num_workers > 0))
            self.samplers[name] = sampler
        self.prepared: dict[str, Any] = {}

    def use_prepared(self, loaders: list[Any] | tuple[Any, ...]) -> None:
        """Take the loaders ``accelerator.prepare`` returned for :attr:`loaders`, in order."""
        self.prepared = dict(zip(self.samplers, loaders, strict=True))

    def batch_size(self, name: str) -> int:
        """The batch per process of modality ``name``: its own ``batch_size``, else ``train.batch_size``."""
        return self.config.modalities[name].batch_size or self.config.train.batch_size

    def batches(self, name: str, step: int) -> Iterator[Any]:
        """This process's batches of ``name`` from ``step`` on, endlessly."""
        if name in self.streams:
            loader = self.streams[name]
            loader.dataset.set_start(step, self.batch_size(name))
            device = self.accelerator.device
            return (batch.to(device, non_blocking=True) for batch in loader)
        return endless_batches(self.accelerator, self.prepared[name], self.samplers[name], step)

    def preview(self, name: str, n: int) -> torch.Tensor:
        """The first ``n`` real samples of ``name`` (at most the dataset), stacked: what sample grids show."""
        dataset = self.datasets[name]
        if isinstance(dataset, ShardStream):
            return torch.stack(dataset.preview(min(n, len(dataset))))
        return torch.stack([dataset[i] for i in range(min(n, len(dataset)))])
