"""Throughput of the image plugin's data sources: built-in shapes rendering and image-folder decoding.

    PYTHONPATH=.:plugins python benchmarks/image_data.py --size 64 --n 5000 --threads 1

Prints images/s for ShapesDataset and for ImageFolderDataset (header check at construction, then decode,
resize and crop per item) on a temporary folder of PNGs this script writes, plus the machine it ran on.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from harness import machine_header
from PIL import Image

from mmgan_image.datasets import ImageFolderDataset, ShapesDataset


def _report(label: str, count: int, seconds: float) -> None:
    print(f"{label:<46}{count / seconds:8.0f} images/s  ({count} in {seconds:.2f} s)")


def bench_shapes(size: int, n: int) -> None:
    ds = ShapesDataset(size=size, length=n)
    ds[0]  # first call pays numpy's one-off setup, not part of steady-state throughput
    start = time.perf_counter()
    for i in range(n):
        ds[i]
    _report(f"ShapesDataset {size}x{size}", n, time.perf_counter() - start)


def bench_folder(size: int, n: int, files: int, source: int) -> None:
    # 4:3 PNGs of shapes rendered at the source resolution: compressible like real photos' flat areas,
    # and big enough that the decoder, the resize and the crop all do real work
    shapes = ShapesDataset(size=source, length=files, seed=1)
    with tempfile.TemporaryDirectory(prefix="mmgan-bench-") as tmp:
        root = Path(tmp)
        for i in range(files):
            pixels = ((shapes[i].permute(1, 2, 0).numpy() + 1.0) * 127.5).round().astype(np.uint8)
            wide = np.concatenate([pixels, pixels[:, : source // 3]], axis=1)
            Image.fromarray(wide).save(root / f"{i:05d}.png")
        start = time.perf_counter()
        ds = ImageFolderDataset(root, size=size)
        _report("ImageFolderDataset header check (construction)", files, time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(n):
            ds[i % len(ds)]
        label = f"ImageFolderDataset {source * 4 // 3}x{source} PNG -> {size}x{size}"
        _report(label, n, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="output side in pixels (default 64)")
    parser.add_argument("--n", type=int, default=5000, help="items to load per measurement (default 5000)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one core)")
    parser.add_argument("--files", type=int, default=256, help="PNGs in the temporary folder (default 256)")
    parser.add_argument("--source", type=int, default=192, help="short side of those PNGs (default 192)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    machine_header(args.threads)
    print(f"numpy {np.__version__}")
    bench_shapes(args.size, args.n)
    bench_folder(args.size, args.n, args.files, args.source)


if __name__ == "__main__":
    main()
