"""WebDataset shards: ``mmgan data pack`` writes them, training streams them.

A shard directory holds ``<name>-000000.tar``, ``<name>-000001.tar``, ... and ``manifest.json``::

    {"format": "mmgan-shards", "version": 1, "modality": "image", "count": 50000,
     "shards": [{"name": "img-000000.tar", "count": 1000}, ...], "image_size": 32, ...}

Each tar member is ``<key>.<ext>`` (``00000042.png``, ``00000042.wav``); members sharing a key form one
sample, as WebDataset expects. What the bytes hold is the modality's business: a plugin answers
``mmgan_shard_codec`` with a :class:`ShardCodec` that encodes its sources and decodes its samples.

Reading (:class:`ShardStream`) gives every (rank, worker) pair its own disjoint subset of the shards
(split by node, then by worker) when there are at least as many shards as pairs, and a fixed number of
samples per rank and epoch, drawn from that subset over and over (resampled) if its shards run short. So
every rank sees the same number of samples whatever the shard sizes, and the stream never ends: a
distributed run cannot hang on a rank that ran out of data. The order is a pure function of the run seed,
the epoch and the (rank, worker) slot.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import logging
import math
import random
import sys
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info
from tqdm.auto import tqdm

from mmgan.contract.codec import PackStream, ShardCodec  # noqa: F401 (mmgan.data.shards named them before)
from mmgan.errors import DataError
from mmgan.files import atomic_path, writing

log = logging.getLogger("mmgan")

MANIFEST = "manifest.json"
FORMAT = "mmgan-shards"
VERSION = 1


# ---- writing --------------------------------------------------------------------------------------------


def check_pack_output(out: Path) -> None:
    """``mmgan data pack``'s OUT must be new or an empty directory: one line saying what it is otherwise."""
    out = Path(out)
    if out.is_dir():
        if any(out.iterdir()):
            raise DataError(f"{out} already exists and is not an empty directory; choose a new output directory")
    elif out.exists() or out.is_symlink():
        what = "a file" if out.is_file() else "a broken symbolic link" if not out.exists() else "not a directory"
        raise DataError(f"{out} exists and is {what}; choose a new output directory")


def pack(codec: ShardCodec, modality: str, source: str, out: Path, shard_size: int = 1000, seed: int = 0,
         limit: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Write ``source`` as shards of ``shard_size`` samples into the new directory ``out``; returns the manifest.

    Each shard is written under a temporary name and renamed when complete, and ``manifest.json`` comes
    last: a directory without a manifest is an interrupted pack, and training refuses it.
    """
    if shard_size < 1:
        raise DataError(f"--shard-size must be positive, got {shard_size}")
    if limit is not None and limit < 1:
        raise DataError(f"--limit must be positive, got {limit}")
    if not 0 <= seed < 2**32:
        raise DataError(f"--seed must be in [0, 2**32), got {seed}")
    out = Path(out)
    check_pack_output(out)
    stream = codec.pack(source, seed, limit)
    created = not out.exists()
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
    prefix = out.resolve().name or "shard"
    shards: list[dict[str, Any]] = []
    writer: wds.TarWriter | None = None
    partial: Path | None = None

    def close() -> None:
        nonlocal writer, partial
        if writer is not None:
            writer.close()
            final = partial.with_suffix("")  # drop ".partial"
            partial.rename(final)
            writer, partial = None, None

    total = 0
    # a bar on a terminal only: in a log file its redraws would be thousands of lines
    bar = tqdm(total=stream.count, desc=f"packing {source}", unit="sample", dynamic_ncols=True,
               disable=not (progress and sys.stderr.isatty()))
    done = False
    try:
        for sample in stream.samples:  # reading the source: its errors are its own
            with writing(out):  # writing the shards: a full disk is one line naming the directory
                if total % shard_size == 0:
                    close()
                    partial = out / f"{prefix}-{len(shards):06d}.tar.partial"
                    writer = wds.TarWriter(str(partial))
                    shards.append({"name": partial.with_suffix("").name, "count": 0})
                writer.write({"__key__": f"{total:08d}", **sample})
            shards[-1]["count"] += 1
            total += 1
            bar.update(1)
        with writing(out):
            close()
        done = True
    finally:
        bar.close()
        if not done:  # interrupted or failed (a full disk): leave nothing half-written behind
            if writer is not None:
                with contextlib.suppress(OSError):
                    writer.close()
                partial.unlink(missing_ok=True)
            for shard in shards:
                (out / shard["name"]).unlink(missing_ok=True)
            if created:
                with contextlib.suppress(OSError):
                    out.rmdir()
    if total == 0:
        raise DataError(f"{source} gave no samples to pack")
    manifest = {"format": FORMAT, "version": VERSION, "modality": modality, "count": total,
                "source": source, "seed": seed, **codec.info(), "shards": shards}
    with atomic_path(out / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


# ---- finding shards -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardSet:
    """The shard files of a ``--data`` source, their sample counts, and the manifest if there is one."""

    source: str
    urls: tuple[str, ...]
    counts: tuple[int, ...]
    manifest: Mapping[str, Any] | None

    @property
    def total(self) -> int:
        return sum(self.counts)


def is_shard_source(source: str) -> bool:
    """True for a brace pattern, a ``.tar`` path, or a directory holding a manifest or only ``.tar`` files
    (an interrupted pack; a data folder with a stray tar in it stays a data folder)."""
    if source.startswith("builtin:"):
        return False
    if "{" in source or source.endswith(".tar"):
        return True
    path = Path(source)
    if not path.is_dir():
        return False
    if (path / MANIFEST).exists():
        return True
    files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
    return bool(files) and all(p.name.endswith((".tar", ".tar.partial")) for p in files)


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable JSON manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{path}: not an mmgan shard manifest (expected \"format\": \"{FORMAT}\")")
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not all(isinstance(s, dict) and {"name", "count"} <= s.keys() for s in shards):
        raise DataError(f"{path}: \"shards\" must be a list of {{\"name\", \"count\"}} entries")
    return manifest


def shard_in(manifest_path: Path, name: Any) -> Path:
    """The shard a manifest's entry names, which must lie in the manifest's own directory: a name that is
    absolute, climbs out with ``..``, or resolves outside through a symbolic link (the shard file itself or a
    directory in its name) is refused. ``mmgan data pack`` writes plain file names; a manifest naming other
    files would have training read whatever tar (or ``/etc/passwd``) it points at."""
    directory = manifest_path.parent
    if not isinstance(name, str) or not name or "\0" in name:
        raise DataError(f"{manifest_path}: shard entry {name!r} is not a file name")
    where = Path(name)
    if where.is_absolute() or ".." in where.parts:
        raise DataError(f"{manifest_path}: shard entry {name!r} is outside the manifest's directory; "
                        "name shards by their file name in that directory")
    target = (directory / where).resolve()
    if not target.is_relative_to(directory.resolve()):
        raise DataError(f"{manifest_path}: shard entry {name!r} resolves to {target}, outside the manifest's "
                        "directory (a symbolic link); copy the shard into the directory")
    return directory / where


def open_shards(source: str) -> ShardSet:
    """Resolve a shard directory (with its manifest), a brace pattern or a single ``.tar`` to a ShardSet."""
    path = Path(source)
    if path.is_dir():
        manifest_path = path / MANIFEST
        if not manifest_path.exists():
            raise DataError(f"{source} holds .tar files but no {MANIFEST}: an interrupted `mmgan data pack`? "
                            f"Pack again, or pass the shards as a brace pattern (name-{{000000..000009}}.tar)")
        manifest = read_manifest(manifest_path)
        if not manifest["shards"]:
            raise DataError(f"{manifest_path} lists no shards")
        urls = tuple(str(shard_in(manifest_path, s["name"])) for s in manifest["shards"])
        missing = [u for u in urls if not Path(u).is_file()]
        if missing:
            raise DataError(f"{manifest_path} lists {len(missing)} shard(s) that do not exist (first: {missing[0]})")
        return ShardSet(source, urls, tuple(int(s["count"]) for s in manifest["shards"]), manifest)

    urls = tuple(wds.shardlists.expand_urls(source))
    if not urls:
        raise DataError(f"--data {source!r}: an empty shard list")
    existing = [u for u in urls if Path(u).is_file()]
    if not existing:
        raise DataError(f"--data {source!r} matches no files (it expands to {len(urls)} name(s), first: {urls[0]})")
    if len(existing) < len(urls):
        first = next(u for u in urls if not Path(u).is_file())
        raise DataError(f"--data {source!r}: {len(urls) - len(existing)} of its {len(urls)} shards do not exist "
                        f"(first: {first})")
    manifest_path = Path(urls[0]).parent / MANIFEST
    manifest = read_manifest(manifest_path) if manifest_path.is_file() else None
    known = {s["name"]: int(s["count"]) for s in manifest["shards"]} if manifest else {}
    counts = tuple(known[Path(u).name] if Path(u).name in known else count_samples(u) for u in urls)
    if sum(counts) == 0:
        raise DataError(f"--data {source!r}: its {len(urls)} shard(s) hold no samples")
    return ShardSet(source, urls, counts, manifest)


def count_samples(url: str) -> int:
    """Samples (distinct keys) in one tar file, from its headers alone."""
    try:
        with tarfile.open(url) as tar:
            keys = {wds.tariterators.base_plus_ext(m.name)[0] for m in tar if m.isreg()}
    except (OSError, tarfile.TarError) as exc:
        raise DataError(f"{url}: not a readable tar file ({exc})") from None
    keys.discard(None)
    return len(keys)


def check_manifest(shards: ShardSet, modality: str, codec: ShardCodec) -> None:
    """The manifest must be for ``modality``, with fields the codec can read."""
    if shards.manifest is None:
        return
    where = f"--data {shards.source}"
    packed = shards.manifest.get("modality")
    if packed != modality:
        raise DataError(f"{where}: the shards hold {packed!r} samples (manifest.json), not {modality!r}; "
                        f"pass shards packed with --modality {modality}")
    codec.check(shards.manifest, where)


# ---- reading --------------------------------------------------------------------------------------------


class ShardStream(IterableDataset):
    """An endless, seeded stream of decoded samples from a ShardSet for one rank (see the module doc).

    ``len()`` is the number of samples in all shards; an epoch is ``ceil(len / world_size)`` samples per
    rank, split between that rank's DataLoader workers. :meth:`set_start` makes the stream begin after
    the samples the first ``batches`` batches took, so resuming continues the same order (exactly,
    unless samples failed to decode before the resume point: skipping does not decode).
    """

    def __init__(self, shards: ShardSet, codec: ShardCodec, seed: int, rank: int = 0, world_size: int = 1,
                 shuffle_buffer: int = 512) -> None:
        self.shards = shards
        self.codec = codec
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle_buffer = max(1, shuffle_buffer)
        self.per_rank = math.ceil(shards.total / world_size)
        self.start_batches = 0
        self.batch_size = 1
        self.skipped = 0  # samples or shards that failed, in this process (each DataLoader worker has its own)

    def __len__(self) -> int:
        return self.shards.total

    def set_start(self, batches: int, batch_size: int) -> None:
        self.start_batches, self.batch_size = batches, batch_size

    def assignment(self, worker: int, num_workers: int) -> tuple[int, list[str], int]:
        """(slot, shard urls, samples per epoch) of one worker of this rank."""
        slots = self.world_size * num_workers
        slot = self.rank * num_workers + worker
        urls = list(self.shards.urls)
        mine = urls[slot::slots] if len(urls) >= slots else urls
        quota = self.per_rank // num_workers + (worker < self.per_rank % num_workers)
        return slot, mine, quota

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # DataLoader takes batches from its workers in turn, starting with worker 0. Batch `start` of the
        # unbroken run came from worker start % num_workers, so after a resume physical worker 0 plays
        # that worker's part, worker 1 the next one's, and so on
        worker = (worker + self.start_batches) % num_workers
        slot, mine, quota = self.assignment(worker, num_workers)
        if quota == 0:  # more workers than samples per rank (training refuses that): nothing to do
            return
        # so this worker made every num_workers-th batch before the resume
        batches = self.start_batches // num_workers + (worker < self.start_batches % num_workers)
        epoch, skip = divmod(batches * self.batch_size, quota)
        while True:
            yield from self._epoch(mine, quota, epoch, slot, skip)
            epoch, skip = epoch + 1, 0

    def _epoch(self, urls: list[str], quota: int, epoch: int, slot: int, skip: int) -> Iterator[torch.Tensor]:
        rng = random.Random(f"{self.seed}/{epoch}/{slot}")
        # the epoch is the first `quota` raw samples, shuffled within the buffer: with shards of the expected
        # sizes that is every sample of this slot's shards exactly once
        raw = itertools.islice(self._raw(urls, rng), quota)
        stream = wds.filters._shuffle(raw, bufsize=self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng)
        decoded, failure = 0, ""
        for index, sample in enumerate(stream):
            if index < skip:
                continue
            try:
                item = self.codec.decode(sample, np.random.default_rng([self.seed, epoch, slot, index]))
            except Exception as exc:  # noqa: BLE001 - any decoder failure means a bad member, never a bug here
                failure = (f"{sample.get('__url__')}: sample {sample.get('__key__')!r} cannot be decoded "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
                self._skip(failure)
                continue
            decoded += 1
            yield item
        if failure and decoded == 0 and quota > skip:
            # a whole epoch without one usable sample: another modality's or a foreign format, not bad luck
            raise DataError(f"--data {self.shards.source}: not one sample of an epoch could be decoded; "
                            f"last: {failure}")

    def _raw(self, urls: list[str], rng: random.Random) -> Iterator[dict[str, Any]]:
        """Undecoded samples from ``urls`` in a fresh random order each pass, pass after pass."""
        expected = dict(zip(self.shards.urls, self.shards.counts, strict=True))
        while True:
            produced = False
            for url in rng.sample(urls, len(urls)):
                n = 0
                for sample in wds.tariterators.tarfile_samples([{"url": url}], handler=self._handler):
                    produced, n = True, n + 1
                    yield sample
                if n < expected[url]:  # a tar cut short inside a header reads as a clean end of archive
                    self._skip(f"{url}: ended after {n} of its {expected[url]} samples (truncated?)")
            if not produced:
                raise DataError(f"none of the shards {urls[0]}... yields a readable sample")

    def _handler(self, exc: Exception) -> bool:
        self._skip(f"shard error, rest of the shard skipped: {type(exc).__name__}: {exc}")
        return True

    def _skip(self, message: str) -> None:
        self.skipped += 1
        if self.skipped <= 5 or self.skipped % 100 == 0:
            log.warning("%s (%d skipped so far in this %s)", message, self.skipped,
                        "worker" if get_worker_info() is not None else "process")

    def preview(self, n: int) -> list[torch.Tensor]:
        """The first ``n`` samples slot 0 would give from the start, in this process (for fixed sample grids)."""
        fresh = copy.copy(self)
        fresh.rank, fresh.start_batches = 0, 0
        return list(itertools.islice(iter(fresh), n))


def open_shard_stream(shards: ShardSet, codec: ShardCodec, modality: str, seed: int, rank: int, world_size: int,
                      num_workers: int, shuffle_buffer: int) -> ShardStream:
    check_manifest(shards, modality, codec)
    per_rank = math.ceil(shards.total / world_size)
    if num_workers > per_rank:
        raise DataError(f"train.num_workers={num_workers} exceeds the {per_rank} samples each process reads from "
                        f"--data {shards.source} per epoch; lower train.num_workers")
    slots = world_size * max(num_workers, 1)
    if len(shards.urls) < slots:
        log.warning("--data %s: %d shard(s) for %d (rank, worker) slots; every slot reads all shards, so ranks "
                    "see overlapping samples; pack at least %d shards (docs/distributed.md)",
                    shards.source, len(shards.urls), slots, slots)
    return ShardStream(shards, codec, seed, rank, world_size, shuffle_buffer)
