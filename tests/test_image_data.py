"""The image plugin's data sources (built-in shapes, image folders) and sample grids."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmgan.errors import DataError
from mmgan_image.datasets import (
    CLASS_NAMES,
    ImageFolderDataset,
    ShapesDataset,
    open_image_source,
)
from mmgan_image.grid import make_grid, save_grid

# --- built-in shapes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_shape_dtype_and_range(size: int) -> None:
    ds = ShapesDataset(size=size, length=40, seed=3)
    assert len(ds) == 40
    batch = torch.stack([ds[i] for i in range(len(ds))])
    assert batch.shape == (40, 3, size, size)
    assert batch.dtype == torch.float32
    assert batch.min() >= -1.0 and batch.max() <= 1.0
    # the whole range is used, not a washed-out band of it
    assert batch.min() < -0.8 and batch.max() > 0.8


def test_shapes_are_deterministic_per_seed_and_index() -> None:
    a, b = ShapesDataset(size=32, seed=7), ShapesDataset(size=32, seed=7)
    # access order must not matter: read b backwards
    later = [b[i] for i in reversed(range(20))][::-1]
    for i in range(20):
        assert torch.equal(a[i], later[i])
    other = ShapesDataset(size=32, seed=8)
    assert all(not torch.equal(a[i], other[i]) for i in range(20))
    # items within one seed differ too, even within a class
    n = len(CLASS_NAMES)
    assert not torch.equal(a[0], a[n])


def test_shapes_labels_cover_every_class() -> None:
    ds = ShapesDataset(size=32, length=1000)
    n = len(CLASS_NAMES)
    assert n >= 10 and len(set(CLASS_NAMES)) == n
    labels = [ds.label(i) for i in range(3 * n)]
    assert set(labels) == set(range(n))
    assert all(0 <= ds.label(i) < n for i in range(len(ds)))


def _class_means(ds: ShapesDataset, per_class: int) -> torch.Tensor:
    n = len(CLASS_NAMES)
    means = torch.zeros(n, 3, ds.size, ds.size)
    for i in range(n * per_class):
        means[ds.label(i)] += ds[i]
    return means / per_class


def test_shape_classes_are_visually_distinct() -> None:
    """Mode collapse must show in a grid: every pair of classes has clearly different mean images, and a
    nearest-mean classifier fitted on one seed recognises the classes of another seed."""
    means = _class_means(ShapesDataset(size=32, seed=0), per_class=20)
    n = len(CLASS_NAMES)
    rms = torch.cdist(means.flatten(1), means.flatten(1)) / (3 * 32 * 32) ** 0.5
    off_diagonal = rms[~torch.eye(n, dtype=torch.bool)]
    assert off_diagonal.min() > 0.25, f"closest classes differ by only {off_diagonal.min():.3f} RMS"

    held_out = ShapesDataset(size=32, seed=1)
    items = torch.stack([held_out[i] for i in range(10 * n)]).flatten(1)
    predicted = torch.cdist(items, means.flatten(1)).argmin(dim=1)
    truth = torch.tensor([held_out.label(i) for i in range(10 * n)])
    assert (predicted == truth).float().mean() >= 0.95


@pytest.mark.parametrize("kwargs", [{"size": 7}, {"size": 32.0}, {"length": 0}, {"size": True}, {"seed": -1}])
def test_shapes_bad_arguments(kwargs: dict) -> None:
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        ShapesDataset(**kwargs)


def test_shapes_index_out_of_range() -> None:
    ds = ShapesDataset(size=8, length=3)
    with pytest.raises(IndexError):
        ds[3]
    assert len(list(ds)) == 3  # the old-style iteration protocol stops on IndexError


# --- image folders ---------------------------------------------------------------------------------------


def _save(path: Path, image: Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def _rgb(w: int, h: int, colour: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (w, h), colour)


def test_folder_finds_images_recursively_in_every_format(tmp_path: Path) -> None:
    _save(tmp_path / "a.png", _rgb(40, 40, (255, 0, 0)))
    _save(tmp_path / "sub" / "b.JPG", _rgb(64, 48, (0, 255, 0)), quality=95)
    _save(tmp_path / "sub" / "deeper" / "c.webp", _rgb(30, 60, (0, 0, 255)), lossless=True)
    _save(tmp_path / "sub" / "d.jpeg", _rgb(33, 33, (0, 0, 0)))
    _save(tmp_path / "e.Png", Image.new("L", (50, 37), 255))  # greyscale, odd size
    (tmp_path / "notes.txt").write_text("not an image")
    _save(tmp_path / "f.bmp", _rgb(10, 10, (1, 2, 3)))  # not a supported extension: ignored

    ds = ImageFolderDataset(tmp_path, size=32)
    names = [p.relative_to(tmp_path).as_posix() for p in ds.files]
    assert names == ["a.png", "e.Png", "sub/b.JPG", "sub/d.jpeg", "sub/deeper/c.webp"]
    assert ds.skipped == []
    for i in range(len(ds)):
        x = ds[i]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert x.min() >= -1.0 and x.max() <= 1.0
    assert torch.allclose(ds[0], torch.tensor([1.0, -1.0, -1.0])[:, None, None].expand(3, 32, 32))
    assert torch.equal(ds[1], torch.ones(3, 32, 32))  # white greyscale -> white RGB
    webp = ds[4]  # lossless blue
    assert torch.allclose(webp, torch.tensor([-1.0, -1.0, 1.0])[:, None, None].expand(3, 32, 32))


def test_folder_converts_modes_to_rgb(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (20, 20), (255, 0, 0, 0))  # fully transparent red: shows as the white canvas
    rgba.paste((0, 0, 255, 255), (0, 0, 20, 10))  # opaque blue top half
    _save(tmp_path / "1_rgba.png", rgba)
    _save(tmp_path / "2_la.png", Image.new("LA", (20, 20), (0, 0)))
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([0, 128, 0] * 256)
    _save(tmp_path / "3_palette.png", palette)
    _save(tmp_path / "4_cmyk.jpg", Image.new("CMYK", (20, 20), (0, 0, 0, 0)), quality=100)
    grey16 = Image.fromarray(np.full((20, 20), 65535, dtype=np.uint16))
    _save(tmp_path / "5_grey16.png", grey16)

    ds = ImageFolderDataset(tmp_path, size=8)
    top = ds[0][:, 0, :]
    bottom = ds[0][:, -1, :]
    assert torch.allclose(top, torch.tensor([-1.0, -1.0, 1.0])[:, None].expand(3, 8), atol=0.02)
    assert torch.allclose(bottom, torch.ones(3, 8), atol=0.02)
    assert torch.allclose(ds[1], torch.ones(3, 8, 8))  # transparent black over white
    assert torch.allclose(ds[2][:, 0, 0], torch.tensor([-1.0, 128 / 127.5 - 1.0, -1.0]), atol=1e-6)
    assert ds[3].min() > 0.9  # CMYK all-zero ink is white
    assert torch.allclose(ds[4], torch.ones(3, 8, 8))  # 16-bit white stays white, not clipped


def test_folder_resizes_short_side_and_crops_centre(tmp_path: Path) -> None:
    wide = Image.new("RGB", (100, 50), (255, 0, 0))
    wide.paste((0, 255, 0), (25, 0, 75, 50))  # the centred 50x50 square is green
    _save(tmp_path / "wide.png", wide)
    tall = Image.new("RGB", (37, 50), (0, 0, 255))
    _save(tmp_path / "tall.png", tall)

    ds = ImageFolderDataset(tmp_path, size=16)
    tall_x, wide_x = ds[0], ds[1]
    assert tall_x.shape == wide_x.shape == (3, 16, 16)
    green = torch.tensor([-1.0, 1.0, -1.0])[:, None, None]
    # the bicubic kernel reaches about one source pixel past the crop box, so check the interior
    assert torch.allclose(wide_x[:, :, 2:-2], green.expand(3, 16, 12), atol=0.02)
    assert torch.allclose(tall_x, torch.tensor([-1.0, -1.0, 1.0])[:, None, None].expand(3, 16, 16))


def test_folder_skips_unreadable_files_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for k in range(3):
        _save(tmp_path / f"good{k}.png", _rgb(12, 12, (10 * k, 0, 0)))
    (tmp_path / "bad1.png").write_bytes(b"definitely not a png")
    (tmp_path / "bad2.jpg").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="mmgan"):
        ds = ImageFolderDataset(tmp_path, size=8)
    assert len(ds) == 3
    assert [p.name for p, _ in ds.skipped] == ["bad1.png", "bad2.jpg"]
    assert all(reason for _, reason in ds.skipped)
    warnings = [r.getMessage() for r in caplog.records if r.name == "mmgan"]
    assert len(warnings) == 1
    assert "skipped 2 of 5 files" in warnings[0] and str(tmp_path) in warnings[0]
    assert "bad1.png" in warnings[0]


def test_folder_substitutes_next_image_when_decoding_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    path = _save(tmp_path / "a_truncated.jpg", noise, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header survives, half the pixel data does not
    _save(tmp_path / "b_good.png", _rgb(10, 10, (0, 255, 0)))

    ds = ImageFolderDataset(tmp_path, size=8)
    assert len(ds) == 2 and ds.skipped == []  # the header check cannot see the truncation
    with caplog.at_level(logging.WARNING, logger="mmgan"):
        first = ds[0]
        again = ds[0]
    assert torch.equal(first, ds[1]) and torch.equal(again, ds[1])
    messages = [r.getMessage() for r in caplog.records if "a_truncated.jpg" in r.getMessage()]
    assert len(messages) == 1  # logged once per file, not once per access


def test_folder_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=str(missing)):
        ImageFolderDataset(missing, size=32)

    a_file = _save(tmp_path / "x.png", _rgb(4, 4, (0, 0, 0)))
    with pytest.raises(DataError, match="not a directory"):
        ImageFolderDataset(a_file, size=32)

    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match=r"no image files.*\.png.*\.webp.*empty") as info:
        ImageFolderDataset(empty, size=32)
    assert "\n" not in str(info.value)

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"junk")
    (broken / "b.webp").write_bytes(b"RIFF")
    with pytest.raises(DataError, match=f"none of the 2 image files in {broken}.*a.png"):
        ImageFolderDataset(broken, size=32)


def test_open_image_source(tmp_path: Path) -> None:
    shapes = open_image_source("builtin:shapes", size=32, seed=5)
    assert isinstance(shapes, ShapesDataset) and shapes.size == 32 and shapes.seed == 5
    assert torch.equal(shapes[0], ShapesDataset(32, seed=5)[0])

    with pytest.raises(DataError, match=r"builtin:mnist.*builtin:shapes"):
        open_image_source("builtin:mnist", size=32, seed=0)

    _save(tmp_path / "one.png", _rgb(8, 8, (0, 0, 0)))
    folder = open_image_source(str(tmp_path), size=8, seed=0)
    assert isinstance(folder, ImageFolderDataset) and len(folder) == 1
    with pytest.raises(DataError, match="nowhere"):
        open_image_source(str(tmp_path / "nowhere"), size=8, seed=0)


# --- grids -----------------------------------------------------------------------------------------------


def test_grid_layout_and_padding() -> None:
    images = torch.rand(64, 3, 32, 32) * 2 - 1
    grid = make_grid(images)
    assert grid.mode == "RGB"
    assert grid.size == (8 * 34 + 2, 8 * 34 + 2)
    pixels = np.asarray(grid)
    assert not pixels[:2].any() and not pixels[:, :2].any() and not pixels[:, 34:36].any()

    ragged = make_grid(torch.zeros(10, 3, 8, 8), nrow=4, padding=1)
    assert ragged.size == (4 * 9 + 1, 3 * 9 + 1)
    grey = make_grid(torch.zeros(5, 1, 8, 8), padding=0)
    assert grey.mode == "L" and grey.size == (3 * 8, 2 * 8)

    with pytest.raises(ValueError, match="shape"):
        make_grid(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="shape"):
        make_grid(torch.zeros(2, 4, 8, 8))


def test_grid_values_round_trip_through_png(tmp_path: Path) -> None:
    images = torch.rand(64, 3, 32, 32) * 2.4 - 1.2  # a little outside [-1, 1]: clamped
    images[0, 0, 0, 0] = float("nan")
    out = save_grid(images, tmp_path / "samples" / "step_000100.png")
    assert out == tmp_path / "samples" / "step_000100.png"
    assert [p.name for p in out.parent.iterdir()] == ["step_000100.png"]  # no temporary left behind

    with Image.open(out) as im:
        assert im.format == "PNG"
        pixels = np.asarray(im.convert("RGB"))
    expected = ((images.nan_to_num(0.0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    expected = expected.permute(0, 2, 3, 1).numpy()
    for k in (0, 9, 63):
        r, c = divmod(k, 8)
        tile = pixels[2 + r * 34 : 2 + r * 34 + 32, 2 + c * 34 : 2 + c * 34 + 32]
        np.testing.assert_array_equal(tile, expected[k])
    assert pixels[2, 2, 0] == 128  # NaN shows as mid-grey
