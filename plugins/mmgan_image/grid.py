"""Sample grids: a batch of [-1, 1] images tiled into one picture, and written to PNG atomically."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmgan.files import atomic_path

GRID_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> Image.Image:
    """Tile ``images`` (N, 3, H, W) or (N, 1, H, W) in [-1, 1] into one RGB or greyscale PIL image.

    ``nrow`` is the number of images per row (default ``ceil(sqrt(N))``); ``padding`` black pixels separate
    the tiles and frame the grid. Values outside [-1, 1] are clamped and NaN shows as mid-grey, so a
    diverged model still gives a picture rather than an error.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"make_grid expects a tensor of shape (N, 3, H, W) or (N, 1, H, W), got {shape}")
    n, channels, h, w = images.shape
    if n == 0:
        raise ValueError("make_grid needs at least one image, got an empty batch")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    ncol = math.ceil(math.sqrt(n)) if nrow is None else nrow
    if ncol < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    ncol = min(ncol, n)
    rows = math.ceil(n / ncol)

    x = torch.nan_to_num(images.detach().to("cpu", torch.float32), nan=0.0).clamp_(-1.0, 1.0)
    pixels = (x.add_(1.0).mul_(127.5)).round_().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    grid = np.zeros((rows * (h + padding) + padding, ncol * (w + padding) + padding, channels), np.uint8)
    for k in range(n):
        r, c = divmod(k, ncol)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        grid[top : top + h, left : left + w] = pixels[k]
    if channels == 1:
        return Image.fromarray(grid[:, :, 0], mode="L")
    return Image.fromarray(grid, mode="RGB")


def save_grid(
    images: torch.Tensor, path: str | os.PathLike[str], nrow: int | None = None, padding: int = 2
) -> Path:
    """Write ``make_grid(images, nrow, padding)`` to ``path``, atomically; parents are created.

    The format follows the suffix (png, jpg/jpeg, webp); any other suffix is a ValueError.
    """
    target = Path(path)
    fmt = GRID_FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write a sample grid to {target}: use a .png, .jpg or .webp file name")
    picture = make_grid(images, nrow=nrow, padding=padding)
    with atomic_path(target) as tmp:
        # the temporary name has no image suffix, so PIL cannot infer the format from it
        picture.save(tmp, format=fmt)
    return target
