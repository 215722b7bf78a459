"""The sliced Wasserstein distance on 7x7 patches of a Laplacian pyramid (Karras et al. 2018): the image
plugin's SWD metric, on image batches ``(N, C, H, W)`` of any channel count; the distance between the
patch sets is core's ``mmgan.evaluation.distances.sliced_wasserstein``."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mmgan.errors import MetricError
from mmgan.evaluation.distances import sliced_wasserstein

_GAUSS = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur(images: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    c = images.shape[1]
    kernel = (torch.outer(_GAUSS, _GAUSS) * gain).to(images)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(F.pad(images, (2, 2, 2, 2), mode="reflect"), kernel, groups=c)


def _pyr_down(images: torch.Tensor) -> torch.Tensor:
    return _blur(images)[:, :, ::2, ::2]


def _pyr_up(images: torch.Tensor) -> torch.Tensor:
    b, c, h, w = images.shape
    up = images.new_zeros(b, c, h * 2, w * 2)
    up[:, :, ::2, ::2] = images
    return _blur(up, gain=4.0)  # zero insertion keeps a quarter of the samples


def laplacian_pyramid(images: torch.Tensor, min_size: int = 16) -> list[torch.Tensor]:
    """Band-pass levels from full resolution down to ``min_size``; the last level is the low-pass image."""
    levels = []
    current = images.float()
    while current.shape[-1] > min_size and current.shape[-2] > min_size:
        down = _pyr_down(current)
        levels.append(current - _pyr_up(down))
        current = down
    levels.append(current)
    return levels


def pyramid_sizes(image_size: int, min_size: int = 16) -> list[int]:
    """The side of each level ``laplacian_pyramid`` returns for square images of ``image_size``."""
    sizes = [image_size]
    while sizes[-1] > min_size:
        sizes.append(sizes[-1] // 2)
    return sizes


def patch_descriptors(level: torch.Tensor, per_image: int, generator: torch.Generator,
                      patch: int = 7) -> torch.Tensor:
    """``per_image`` random ``patch`` x ``patch`` neighbourhoods from each image: ``(N * per_image, C*patch^2)``."""
    n, c, h, w = level.shape
    if h < patch or w < patch:
        raise MetricError(f"images of {h}x{w} are smaller than the {patch}x{patch} SWD patches")
    ys = torch.randint(0, h - patch + 1, (n, per_image), generator=generator)
    xs = torch.randint(0, w - patch + 1, (n, per_image), generator=generator)
    offsets = torch.arange(patch)
    rows = (ys[..., None] + offsets)[..., :, None].expand(n, per_image, patch, patch)
    cols = (xs[..., None] + offsets)[..., None, :].expand(n, per_image, patch, patch)
    flat = level.reshape(n, c, h * w)
    index = (rows * w + cols).reshape(n, 1, -1).expand(n, c, -1)
    patches = flat.gather(2, index).reshape(n, c, per_image, patch * patch)
    return patches.permute(0, 2, 1, 3).reshape(n * per_image, c * patch * patch)


def normalise_descriptors(desc: torch.Tensor, channels: int) -> torch.Tensor:
    """Zero mean, unit standard deviation per colour channel, over all descriptors and positions."""
    view = desc.reshape(len(desc), channels, -1)
    mean = view.mean(dim=(0, 2), keepdim=True)
    std = view.std(dim=(0, 2), keepdim=True).clamp_min(1e-8)
    return ((view - mean) / std).reshape(desc.shape)


def sliced_wasserstein_distance(real: torch.Tensor, fake: torch.Tensor, patches_per_image: int = 64,
                                min_size: int = 16, seed: int = 0) -> dict[str, float]:
    """SWD x 1e3 per Laplacian-pyramid level (``swd_<side>``) and their mean (``swd``), Karras et al. 2018.

    Both sets are ``(N, C, H, W)`` images of one size; their descriptors are normalised per channel,
    each set by its own statistics, and compared along 4 x 128 random directions (Karras's
    ``dir_repeats`` and ``dirs_per_repeat``). Patch positions and
    directions are functions of ``seed``, so identical sets give exactly 0.
    """
    if real.shape[1:] != fake.shape[1:]:
        raise MetricError(f"real samples are {tuple(real.shape[1:])} but generated ones are {tuple(fake.shape[1:])}")
    n = min(len(real), len(fake))
    channels = real.shape[1]
    results = {}
    # one level at a time: descriptors of every level at once would hold several copies of the sets
    for level, size in enumerate(pyramid_sizes(real.shape[-1], min_size)):
        sets = []
        for images in (real[:n], fake[:n]):
            gen = torch.Generator().manual_seed(seed + level)
            desc = torch.cat([patch_descriptors(laplacian_pyramid(batch, min_size)[level], patches_per_image, gen)
                              for batch in images.split(256)])
            sets.append(normalise_descriptors(desc, channels))
        results[f"swd_{size}"] = 1e3 * sliced_wasserstein(*sets, seed=seed + level)
    results["swd"] = float(np.mean(list(results.values())))
    return results
