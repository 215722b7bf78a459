"""How a modality's samples are stored in WebDataset shards: the :class:`ShardCodec` a modality object
returns from ``shard_codec``. Core owns everything else about shards (``mmgan.data.shards``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass
class PackStream:
    """What a codec packs from one source: ``count`` samples (for the progress bar), each a
    ``{extension: bytes}`` dict."""

    count: int
    samples: Iterable[dict[str, bytes]]


class ShardCodec(ABC):
    """How one modality's samples are stored in shards; a plugin returns one from ``mmgan_shard_codec``.

    Instances are pickled into DataLoader workers: keep them to plain data (a config, not open files).
    """

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Manifest fields the packed bytes depend on, e.g. ``{"image_size": 32}``."""

    @abstractmethod
    def pack(self, source: str, seed: int, limit: int | None) -> PackStream:
        """The samples of ``source`` (at most ``limit``) as ``{extension: bytes}`` dicts, ready to write."""

    @abstractmethod
    def decode(self, sample: Mapping[str, bytes], rng: np.random.Generator) -> torch.Tensor:
        """One training sample from a shard sample; raise on bad bytes (the sample is skipped and counted).

        ``rng`` is seeded per sample by the stream (for random crops); draw all randomness from it.
        """

    def check(self, manifest: Mapping[str, Any], where: str) -> None:  # noqa: B027 - optional hook
        """Raise :class:`DataError` (naming ``where``) if the manifest's fields do not fit this codec."""
