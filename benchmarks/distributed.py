"""Shard streaming and multi-process training on this machine (issue 4).

    PYTHONPATH=.:plugins python benchmarks/distributed.py shards    # decode rate vs what a step consumes
    PYTHONPATH=.:plugins python benchmarks/distributed.py scaling   # steps/s: 1 process vs 2 (gloo)

``shards`` packs the built-in image and speech sets into temporary shards, then reads them through a
DataLoader with 0 and 2 worker processes as training does (ShardStream: tar reading, shuffle buffer,
PNG/WAV decoding, crops) and prints samples/s next to the samples/s a default training step consumes
(measured here, one process).

``scaling`` runs the default image model (`mmgan run --plugin image`, batch 32 per process) for a few
steps: one process with 2 threads, two gloo processes with 1 thread each (`accelerate launch`, the
documented CPU form), and one process at batch 64 (the 2-process global batch), in interleaved rounds.
steps/s is the median over rounds of each run's median logged rate after the first log interval.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from harness import machine_header, trainer_step_fn
from torch.utils.data import DataLoader

from mmgan import config as cfg
from mmgan.api import get_modality
from mmgan.data import ShardStream, open_shards, pack
from mmgan.engine import Trainer
from mmgan_image.shards import ImageCodec
from mmgan_speech.shards import SpeechCodec


def decode_rate(stream: ShardStream, batch: int, workers: int, batches: int) -> float:
    loader = DataLoader(stream, batch_size=batch, num_workers=workers, drop_last=True)
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    start = time.perf_counter()
    samples = sum(len(b) for b in itertools.islice(it, batches))
    return samples / (time.perf_counter() - start)


def step_rate(modality: str, out: Path, steps: int) -> tuple[float, int]:
    config = cfg.resolve(get_modality, plugins=(modality,), out=out, steps=steps + 2)
    trainer = Trainer(config, progress=False)
    step = trainer_step_fn(trainer)
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start), config.train.batch_size


def shards(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = [("image", ImageCodec(32), "builtin:shapes", 32, 4000, args.image_steps),
                 ("speech", SpeechCodec(8192, 22050), "builtin:speech", 16, 800, args.speech_steps)]
        print("| modality | batch | decode, 0 workers | decode, 2 workers | training step consumes |")
        print("|:--|--:|--:|--:|--:|")
        for name, codec, source, batch, count, steps in cases:
            pack(codec, name, source, tmp / name, shard_size=count // 8, limit=count, progress=False)
            stream = ShardStream(open_shards(str(tmp / name)), codec, seed=0)
            rates = [decode_rate(stream, batch, workers, args.batches) for workers in (0, 2)]
            steps_per_s, train_batch = step_rate(name, tmp / f"run-{name}", steps)
            print(f"| {name} | {batch} | {rates[0]:.0f} samples/s | {rates[1]:.0f} samples/s | "
                  f"{steps_per_s * train_batch:.1f} samples/s ({steps_per_s:.2f} steps/s) |", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_rate(out: Path, processes: int, batch: int, steps: int) -> float:
    run = ["-m", "mmgan", "run", "--plugin", "image", "--out", str(out), "--steps", str(steps), "--batch-size",
           str(batch), "--no-progress", "--set", "train.log_every=10", "--set", f"train.sample_every={steps}",
           "--set", f"train.checkpoint_every={steps}"]
    env = dict(os.environ)
    if processes == 1:
        cmd = [sys.executable, *run]
        env["OMP_NUM_THREADS"] = str(os.cpu_count())
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
               str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), *run]
        env.update(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS=str(max(1, os.cpu_count() // processes)))
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    rates = [json.loads(line)["steps_per_s"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(rates[1:])


def scaling(args: argparse.Namespace) -> None:
    setups = [(1, 32), (2, 32), (1, 64)]
    rates: dict[tuple[int, int], list[float]] = {s: [] for s in setups}
    with tempfile.TemporaryDirectory() as tmp:
        # interleaved rounds, so that a change in the machine's load hits every setup alike
        for round_ in range(args.rounds):
            for i, setup in enumerate(setups):
                rates[setup].append(run_rate(Path(tmp) / f"r{round_}-{i}", *setup, args.steps))
                print(f"round {round_}: {setup[0]} process(es) x batch {setup[1]}: {rates[setup][-1]:.2f} steps/s",
                      flush=True)
    base = statistics.median(rates[setups[0]]) * setups[0][1]
    print("| processes | batch per process | global batch | steps/s (median) | images/s | images/s vs 1 x 32 |")
    print("|--:|--:|--:|--:|--:|--:|")
    for processes, batch in setups:
        rate = statistics.median(rates[(processes, batch)])
        images = rate * processes * batch
        print(f"| {processes} | {batch} | {processes * batch} | {rate:.2f} | {images:.0f} | {images / base:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["shards", "scaling"])
    parser.add_argument("--batches", type=int, default=60, help="batches read per decode measurement")
    parser.add_argument("--image-steps", type=int, default=20)
    parser.add_argument("--speech-steps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=80, help="training steps per scaling run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the scaling runs")
    args = parser.parse_args()
    machine_header(torch.get_num_threads())
    {"shards": shards, "scaling": scaling}[args.what](args)


if __name__ == "__main__":
    main()
