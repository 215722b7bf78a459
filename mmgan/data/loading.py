"""Data plumbing shared by every modality: opening a source through plugins, and a resumable order."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Any

import pluggy
import torch
from torch.utils.data import Dataset, Sampler

from mmgan.contract import calls
from mmgan.data.shards import ShardStream, is_shard_source, open_shard_stream, open_shards
from mmgan.errors import DataError


def check_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (numpy integers accepted; floats, bools and strings refused),
    else a ValueError naming ``name``: for plugins' dataset arguments."""
    try:
        number = operator.index(value)
    except TypeError:
        number = None
    if isinstance(value, bool) or number is None or number < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return number


class EpochSampler(Sampler[int]):
    """A fresh random permutation per epoch, a pure function of (seed, epoch).

    Because the order depends on nothing but the seed and the epoch number, a resumed run can rebuild
    it and skip the batches it already consumed: resume sees the same data order as an unbroken run.
    """

    def __init__(self, length: int, seed: int) -> None:
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.length, generator=gen).tolist())


def open_source(pm: pluggy.PluginManager, modality: str, source: str, config: Any, seed: int) -> Dataset:
    """Ask the plugins for a dataset of ``modality`` read from ``source``; an error if none answers."""
    if not source:
        raise DataError(f"no data source for modality {modality!r}: pass --data or set {modality}.data")
    dataset = calls.read_data(modality, source, config, seed, pm)
    if dataset is None:
        raise DataError(f"no installed plugin reads {source!r} for modality {modality!r}")
    if len(dataset) == 0:
        raise DataError(f"data source {source!r} for modality {modality!r} holds no samples")
    return dataset


def open_training_data(pm: pluggy.PluginManager, modality: str, config: Any, seed: int, rank: int = 0,
                       world_size: int = 1, num_workers: int = 0, shuffle_buffer: int = 512) -> Dataset | ShardStream:
    """The real data of one modality of a run: a :class:`ShardStream` for WebDataset shards (a shard
    directory, a brace pattern or a .tar), else the plugin's dataset for ``config.data``."""
    source = config.data
    if source and is_shard_source(source):
        shards = open_shards(source)
        codec = calls.shard_codec(modality, config, pm)
        if codec is None:
            raise DataError(f"--data {source}: no installed plugin reads {modality!r} shards (no shard_codec)")
        return open_shard_stream(shards, codec, modality, seed, rank, world_size, num_workers, shuffle_buffer)
    return open_source(pm, modality, source, config, seed)


def endless_batches(accelerator: Any, loader: Any, sampler: EpochSampler, start_batch: int) -> Iterator[Any]:
    """Batches forever, epoch after epoch, starting ``start_batch`` batches into the sequence.

    Skipping goes through Accelerate's ``skip_first_batches``, which skips sampler indices without
    loading their samples, so resuming deep into an epoch costs nothing.
    """
    per_epoch = len(loader)
    if per_epoch == 0:
        raise DataError("the data source holds fewer samples than one batch; lower train.batch_size")
    epoch, skip = divmod(start_batch, per_epoch)
    while True:
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        # Accelerate's loaders re-apply their own epoch counter to the sampler when iterated, and a
        # skipping loader starts that counter at 0: set it on the loader, not only on the sampler.
        if hasattr(batches, "set_epoch"):
            batches.set_epoch(epoch)
        sampler.set_epoch(epoch)
        yield from batches
        epoch, skip = epoch + 1, 0
