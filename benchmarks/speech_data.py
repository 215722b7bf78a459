"""Throughput of the speech plugin's data sources: the built-in speech-like set and WAV-folder decoding.

    PYTHONPATH=.:plugins python benchmarks/speech_data.py --n 1000 --threads 1

Prints items/s (and audio samples/s) for SpeechLikeDataset and for WavFolderDataset on a temporary folder
of 16-bit WAVs this script writes (LJSpeech-like clip lengths), at 22050 Hz and at 16 kHz (resampled on
read): the construction scan, then items in shuffled order (a training epoch) and in sequential order
(which reuses the last decoded clip). Plus the machine it ran on.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.signal
import torch
from harness import machine_header

from mmgan_speech.audio import write_wav
from mmgan_speech.datasets import SpeechLikeDataset, WavFolderDataset


def _report(label: str, count: int, seconds: float, samples: int, unit: str = "items") -> None:
    print(f"{label:<52}{count / seconds:8.0f} {unit}/s {samples * count / seconds / 1e6:7.2f} M samples/s  "
          f"({count} in {seconds:.2f} s)")


def bench_builtin(segment: int, n: int) -> None:
    ds = SpeechLikeDataset(segment_length=segment, length=n)
    ds[0]  # first call pays numpy/scipy's one-off setup, not part of steady-state throughput
    start = time.perf_counter()
    for i in range(n):
        ds[i]
    _report(f"SpeechLikeDataset {segment} samples", n, time.perf_counter() - start, segment)


def bench_folder(segment: int, n: int, files: int, seconds: float, rate: int) -> None:
    source = SpeechLikeDataset(segment_length=segment, length=1, seed=1)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="mmgan-bench-") as tmp:
        root = Path(tmp)
        for i in range(files):
            clip = source.clip(i, seconds * rng.uniform(0.5, 1.5))[0].numpy()
            if rate != 22050:
                clip = scipy.signal.resample_poly(clip, rate // 50, 22050 // 50)
            write_wav(root / f"{i:05d}.wav", clip, rate)
        start = time.perf_counter()
        ds = WavFolderDataset(root, segment_length=segment)
        _report(f"WavFolderDataset scan, {rate} Hz, ~{seconds:g} s clips", files, time.perf_counter() - start,
                int(ds.lengths.mean()), unit="files")
        order = np.random.default_rng(1).permutation(len(ds))
        for label, indices in (("shuffled", order), ("sequential", np.arange(len(ds)))):
            count = min(n, len(ds))
            start = time.perf_counter()
            for k in indices[:count]:
                ds[int(k)]
            _report(f"WavFolderDataset {rate} Hz -> 22050, {label}", count, time.perf_counter() - start, segment)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segment", type=int, default=8192, help="samples per item (default 8192)")
    parser.add_argument("--n", type=int, default=1000, help="items per measurement (default 1000)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one core)")
    parser.add_argument("--files", type=int, default=64, help="WAVs in the temporary folder (default 64)")
    parser.add_argument("--seconds", type=float, default=6.0, help="mean clip length (default 6, as LJSpeech)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    machine_header(args.threads)
    print(f"numpy {np.__version__}, scipy {scipy.__version__}")
    bench_builtin(args.segment, args.n)
    for rate in (22050, 16000):
        bench_folder(args.segment, args.n, args.files, args.seconds, rate)


if __name__ == "__main__":
    main()
