"""The image modality's shard format: PNG members at the packed ``image_size``."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from PIL import Image

from mmgan.data.shards import PackStream, ShardCodec
from mmgan.errors import DataError
from mmgan_image.datasets import ShapesDataset, load_image, open_image_source

log = logging.getLogger("mmgan")

#: member extensions read as images, in order of preference
IMAGE_KEYS = ("png", "jpg", "jpeg", "webp")


def png_bytes(image: torch.Tensor) -> bytes:
    """A (3, H, W) tensor in [-1, 1] as PNG bytes (lossless: decoding gives back the 8-bit pixels)."""
    # numpy, not torch: for one small image torch's per-op overhead is most of the cost
    pixels = np.rint((np.clip(image.numpy(), -1, 1) + 1) * 127.5).astype(np.uint8).transpose(1, 2, 0)
    handle = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), mode="RGB").save(handle, format="PNG", compress_level=1)
    return handle.getvalue()


class ImageCodec(ShardCodec):
    """Packs the images a source gives at ``image_size`` (resized and centre-cropped, as training reads
    them) as PNG, in a seeded random order; reads png, jpg or webp members of any size back at
    ``image_size``, so shards written by other tools work too."""

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size

    def info(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "encoding": "png"}

    def pack(self, source: str, seed: int, limit: int | None) -> PackStream:
        dataset = open_image_source(source, self.image_size, seed)
        count = len(dataset) if limit is None else min(limit, len(dataset))
        if isinstance(dataset, ShapesDataset):
            # item i of the built-in set has class i % 10: the first `limit` items keep the classes balanced
            order = np.random.default_rng(seed).permutation(count)
        else:
            order = np.random.default_rng(seed).permutation(len(dataset))[:count]

        def samples() -> Iterator[dict[str, bytes]]:
            for i in order:
                yield {"png": png_bytes(dataset[int(i)])}

        return PackStream(count, samples())

    def decode(self, sample: Mapping[str, bytes], rng: np.random.Generator) -> torch.Tensor:
        for key in IMAGE_KEYS:
            if key in sample:
                return load_image(io.BytesIO(sample[key]), self.image_size)
        found = sorted(k for k in sample if not k.startswith("__"))
        raise DataError(f"no image member ({', '.join(IMAGE_KEYS)}); found {found}")

    def check(self, manifest: Mapping[str, Any], where: str) -> None:
        packed = manifest.get("image_size")
        if isinstance(packed, int) and packed != self.image_size:
            log.warning("%s: images were packed at %dx%d and are resized to image.image_size=%d while reading%s",
                        where, packed, packed, self.image_size, " (upscaled: blurrier)" if packed < self.image_size
                        else "")
