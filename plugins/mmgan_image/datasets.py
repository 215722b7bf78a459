"""Image data sources: built-in synthetic shapes and folders of image files, as [-1, 1] tensors."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps

from mmgan.data.loading import check_int
from mmgan.errors import DataError

log = logging.getLogger("mmgan")

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp")
BUILTIN_SOURCES: tuple[str, ...] = ("shapes",)

# --- built-in shapes -------------------------------------------------------------------------------------
#
# Each class pairs a distinct shape with a distinct foreground/background colour pair, so a collapsed
# generator shows up in a sample grid as one repeated shape *and* one repeated colour scheme.
# Shapes are signed distance functions (negative inside) in a unit frame where the shape spans about
# [-1, 1]; the renderer places that frame with a random centre, scale and rotation.

Sdf = Callable[[np.ndarray, np.ndarray], np.ndarray]

_SQRT3_2 = math.sqrt(3.0) / 2.0
_STRIPE_PERIOD = 0.5  # in unit-frame coordinates: about 4 stripes across the image at scale 1


def _disc(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sqrt(x * x + y * y) - 1.0


def _square(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Chebyshev distance is exact inside and along the edges, which is all anti-aliasing needs
    return np.maximum(np.abs(x), np.abs(y)) - 0.8


def _triangle(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # equilateral, apex up (image y grows downward): the max over the three edge half-planes
    edges = np.maximum(y, np.maximum(_SQRT3_2 * x - 0.5 * y, -_SQRT3_2 * x - 0.5 * y))
    return edges - 0.5


def _ring(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.abs(np.sqrt(x * x + y * y) - 0.75) - 0.22


def _cross(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    ax, ay = np.abs(x), np.abs(y)
    return np.minimum(np.maximum(ax - 1.0, ay - 0.3), np.maximum(ax - 0.3, ay - 1.0))


def _stripe(t: np.ndarray) -> np.ndarray:
    # signed distance to bands of half the period, centred on multiples of the period
    phase = t / _STRIPE_PERIOD
    return (np.abs(phase - np.floor(phase + 0.5)) - 0.25) * _STRIPE_PERIOD


def _hstripes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _stripe(y)


def _vstripes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _stripe(x)


def _checkerboard(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    sx, sy = _stripe(x), _stripe(y)
    # inside where both stripe patterns agree; the nearer band edge is the distance to the cell border
    near = np.minimum(np.abs(sx), np.abs(sy))
    return np.where((sx < 0) == (sy < 0), -near, near)


def _diamond(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (np.abs(x) + np.abs(y) - 1.1) * (1.0 / math.sqrt(2.0))


def _two_dots(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    y2 = y * y
    left = (x + 0.6) ** 2 + y2
    right = (x - 0.6) ** 2 + y2
    return np.sqrt(np.minimum(left, right)) - 0.4


@dataclass(frozen=True)
class _ShapeClass:
    name: str
    sdf: Sdf
    fg: tuple[float, float, float]
    bg: tuple[float, float, float]
    max_rotation: float  # radians either way; kept small where rotation would turn one class into another
    pattern: bool = False  # fills the frame (stripes, checks) rather than sitting on a background


_CLASSES: tuple[_ShapeClass, ...] = (
    _ShapeClass("disc", _disc, (0.90, 0.15, 0.15), (0.05, 0.10, 0.35), 0.0),
    _ShapeClass("square", _square, (0.95, 0.85, 0.10), (0.10, 0.35, 0.15), math.radians(15)),
    _ShapeClass("triangle", _triangle, (0.10, 0.85, 0.90), (0.40, 0.05, 0.10), math.radians(25)),
    _ShapeClass("ring", _ring, (1.00, 0.55, 0.05), (0.08, 0.08, 0.08), 0.0),
    _ShapeClass("cross", _cross, (0.95, 0.95, 0.95), (0.40, 0.10, 0.55), math.radians(20)),
    _ShapeClass("hstripes", _hstripes, (0.15, 0.70, 0.20), (0.92, 0.92, 0.80), math.radians(10), True),
    _ShapeClass("vstripes", _vstripes, (0.15, 0.30, 0.95), (0.98, 0.88, 0.50), math.radians(10), True),
    _ShapeClass(
        "checkerboard", _checkerboard, (0.90, 0.15, 0.70), (0.97, 0.97, 0.97), math.radians(10), True
    ),
    _ShapeClass("diamond", _diamond, (1.00, 0.60, 0.75), (0.00, 0.42, 0.42), math.radians(15)),
    _ShapeClass("two_dots", _two_dots, (0.65, 0.95, 0.10), (0.35, 0.20, 0.08), math.pi),
)

CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in _CLASSES)
_COLOUR_JITTER = 0.08




class ShapesDataset(torch.utils.data.Dataset):
    """Synthetic coloured shapes in ``len(CLASS_NAMES)`` classes, rendered on the fly.

    Item ``i`` has class ``i % len(CLASS_NAMES)`` and is a pure function of ``(seed, i)``: the same pair
    always gives a bit-identical (3, size, size) float32 tensor in [-1, 1], so the set needs no storage and
    behaves the same in every DataLoader worker.
    """

    def __init__(self, size: int = 64, length: int = 50_000, seed: int = 0) -> None:
        self.size = check_int("size", size, 8)
        self.length = check_int("length", length, 1)
        self.seed = check_int("seed", seed, 0)
        size = self.size
        # pixel centres on [-1, 1]; one pixel is 2/size wide, the width of the anti-aliased edge
        axis = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
        self._x = np.broadcast_to(axis[None, :], (size, size))
        self._y = np.broadcast_to(axis[:, None], (size, size))
        self._inv_pixel = size / 2.0

    def __len__(self) -> int:
        return self.length

    def label(self, i: int) -> int:
        """Class index of item ``i`` (an index into ``CLASS_NAMES``)."""
        return i % len(_CLASSES)

    def __getitem__(self, i: int) -> torch.Tensor:
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for ShapesDataset of length {self.length}")
        return torch.from_numpy(self._render(i))

    def _render(self, i: int) -> np.ndarray:
        cls = _CLASSES[i % len(_CLASSES)]
        # one generator per item, keyed by (seed, i), so items never depend on access order
        u = np.random.default_rng((self.seed, i)).random(10)
        angle = (2.0 * u[0] - 1.0) * cls.max_rotation
        if cls.pattern:
            scale = 0.8 + 0.5 * u[1]
            cx, cy = 2.0 * u[2] - 1.0, 2.0 * u[3] - 1.0  # any offset: it only shifts the pattern's phase
        else:
            scale = 0.38 + 0.22 * u[1]
            cx, cy = 0.5 * u[2] - 0.25, 0.5 * u[3] - 0.25
        cos, sin = float(math.cos(angle) / scale), float(math.sin(angle) / scale)
        dx = self._x - np.float32(cx)
        dy = self._y - np.float32(cy)
        ux = cos * dx + sin * dy
        uy = cos * dy - sin * dx
        # distance in pixels -> coverage: 1 inside, 0 outside, a one-pixel ramp across the edge
        dist = cls.sdf(ux, uy) * np.float32(scale * self._inv_pixel)
        alpha = np.clip(0.5 - dist, 0.0, 1.0)

        jitter = (u[4:10] * 2.0 - 1.0) * _COLOUR_JITTER
        fg = np.clip(np.asarray(cls.fg) + jitter[:3], 0.0, 1.0)
        bg = np.clip(np.asarray(cls.bg) + jitter[3:], 0.0, 1.0)
        # straight to [-1, 1]: out = bg' + alpha * (fg' - bg') with colours already rescaled
        lo = (bg * 2.0 - 1.0).astype(np.float32)[:, None, None]
        span = ((fg - bg) * 2.0).astype(np.float32)[:, None, None]
        return alpha[None, :, :] * span + lo


# --- folder of images ------------------------------------------------------------------------------------


def _failure(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparency is composited over white, as a viewer would show it."""
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    if im.mode.startswith("I"):
        # 16-bit greyscale PNGs open as I or I;16; a plain convert would clip everything above 255 to white
        grey = np.asarray(im, dtype=np.float32) * (255.0 / 65535.0)
        return Image.fromarray(np.clip(grey + 0.5, 0, 255).astype(np.uint8), mode="L").convert("RGB")
    return im.convert("RGB")


class ImageFolderDataset(torch.utils.data.Dataset):
    """Every .png/.jpg/.jpeg/.webp file under ``root`` (recursively), as square RGB tensors in [-1, 1].

    Files are checked once at construction; those that are not readable images are listed in ``skipped``
    as ``(path, reason)`` and left out. Each item is the image's short side resized to ``size`` and
    centre-cropped to ``size`` x ``size``, as a float32 (3, size, size) tensor.
    """

    def __init__(self, root: str | Path, size: int) -> None:
        self.root = Path(root)
        self.size = check_int("size", size, 1)
        if not self.root.exists():
            raise DataError(f"image folder {self.root} does not exist")
        if not self.root.is_dir():
            raise DataError(f"image source {self.root} is not a directory")
        candidates = sorted(
            (p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
            key=lambda p: p.relative_to(self.root).as_posix(),
        )
        if not candidates:
            wanted = ", ".join(IMAGE_EXTENSIONS)
            raise DataError(f"no image files ({wanted}, any case, searched recursively) in {self.root}")

        self.files: list[Path] = []
        self.skipped: list[tuple[Path, str]] = []
        small: list[tuple[Path, tuple[int, int]]] = []  # short side below size: upscaled, so blurry
        for path in candidates:
            try:
                with Image.open(path) as im:
                    dimensions = im.size
                    im.verify()
            # PIL reports bad files through many exception types (OSError, SyntaxError, struct.error,
            # DecompressionBombError, ...); any of them means "not usable", never a bug here
            except Exception as exc:  # noqa: BLE001
                self.skipped.append((path, _failure(exc)))
            else:
                self.files.append(path)
                if min(dimensions) < self.size:
                    small.append((path, dimensions))

        if self.skipped:
            first, reason = self.skipped[0]
            detail = f"{first.relative_to(self.root).as_posix()}: {reason}"
            if not self.files:
                raise DataError(
                    f"none of the {len(candidates)} image files in {self.root} is a readable image "
                    f"(first: {detail})"
                )
            log.warning(
                "skipped %d of %d files in %s that are not readable images (first: %s)",
                len(self.skipped),
                len(candidates),
                self.root,
                detail,
            )
        if small:
            path, (w, h) = min(small, key=lambda item: min(item[1]))
            log.warning(
                "%d of %d images in %s have a side shorter than %d px and are upscaled (smallest: %s, %dx%d)",
                len(small),
                len(self.files),
                self.root,
                self.size,
                path.relative_to(self.root).as_posix(),
                w,
                h,
            )
        # indices whose decode failed after passing the header check; kept per process (per worker)
        self._broken: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        n = len(self.files)
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for ImageFolderDataset of length {n}")
        # a file can pass verify() and still fail to decode (e.g. truncated pixel data); substituting the
        # next readable file keeps a long training run alive, and (i + k) % n keeps the choice deterministic
        for k in range(n):
            j = (i + k) % n
            if j in self._broken:
                continue
            try:
                return self._load(self.files[j])
            except Exception as exc:  # noqa: BLE001 - same reasoning as the verify() loop
                self._broken.add(j)
                log.warning(
                    "cannot decode %s, using the next image instead: %s", self.files[j], _failure(exc)
                )
        raise DataError(f"none of the {n} image files in {self.root} could be decoded")

    def _load(self, path: Path) -> torch.Tensor:
        return load_image(path, self.size)


def load_image(file: Path | BinaryIO, size: int) -> torch.Tensor:
    """An image file (path or binary file object) as a float32 (3, size, size) tensor in [-1, 1]: the short
    side resized to ``size``, centre-cropped, EXIF rotation applied, any mode converted to RGB."""
    with Image.open(file) as im:
        # lets the JPEG decoder downscale by a power of two while keeping both sides >= size
        im.draft("RGB", (size, size))
        # phone photos store their rotation in EXIF; without this they come out sideways
        im = _to_rgb(ImageOps.exif_transpose(im))
    w, h = im.size
    short = min(w, h)
    # resize the centred square crop in one step: same result as resize-then-crop, less work
    left, top = (w - short) / 2.0, (h - short) / 2.0
    if (w, h) != (size, size):
        im = im.resize(
            (size, size),
            Image.Resampling.BICUBIC,
            box=(left, top, left + short, top + short),
            reducing_gap=3.0,
        )
    pixels = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy())
    return pixels.permute(2, 0, 1).to(torch.float32).div_(127.5).sub_(1.0)


# --- entry point -----------------------------------------------------------------------------------------


def open_image_source(source: str, size: int, seed: int) -> torch.utils.data.Dataset:
    """Open ``"builtin:shapes"`` (synthetic, seeded by ``seed``) or a folder path of image files."""
    if source.startswith("builtin:"):
        name = source.removeprefix("builtin:")
        if name == "shapes":
            return ShapesDataset(size, seed=seed)
        valid = ", ".join(f"builtin:{b}" for b in BUILTIN_SOURCES)
        raise DataError(f"unknown built-in image source {source!r}; valid: {valid}")
    return ImageFolderDataset(source, size)
