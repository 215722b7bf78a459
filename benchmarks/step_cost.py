"""What a switch costs per training step: a modality's default run against the same with overrides, in one
process, interleaved.

    PYTHONPATH=.:plugins python benchmarks/step_cost.py image --variant diffaug=image.augment=color,translation,cutout
    PYTHONPATH=.:plugins python benchmarks/step_cost.py speech --variant gan=speech.adversarial_start=0

Each contender is a ``Trainer`` of ``mmgan run --plugin MODALITY`` with its defaults (precision as the run
resolves it), plus the variant's ``KEY=VALUE`` overrides (comma-joined values stay one value; separate
overrides with ``;``). Blocks of ``--block`` steps are timed round-robin with the order rotated each
round, after ``--warmup`` untimed steps; the table gives the median seconds per step and the ratio to
the default. Only ratios from one run mean much on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine_header, trainer_step_fn  # noqa: E402

from mmgan.api import get_modality  # noqa: E402
from mmgan.config import resolve  # noqa: E402
from mmgan.engine import Trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modality")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=KEY=VALUE[;KEY=VALUE]",
                        help="a contender: its name, then its overrides (repeatable)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block", type=int, default=20, help="steps per timed block (default 20)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine_header(args.threads)
    variants = {"default": []}
    for text in args.variant:
        name, _, overrides = text.partition("=")
        if not name or not overrides:
            parser.error(f"--variant takes NAME=KEY=VALUE, got {text!r}")
        variants[name] = overrides.split(";")
    steps = {}
    with tempfile.TemporaryDirectory(prefix="mmgan-cost-") as tmp:
        for name, overrides in variants.items():
            config = resolve(get_modality, plugins=[args.modality], out=Path(tmp, name), seed=0,
                             overrides=[*overrides, "train.steps=1000000"])
            torch.manual_seed(0)
            steps[name] = trainer_step_fn(Trainer(config, progress=False))
            print(f"{name}: {' '.join(overrides) or '(the defaults)'}; precision {config.train.mixed_precision}")
        for step in steps.values():
            for _ in range(args.warmup):
                step()
        seconds = {name: [] for name in steps}
        names = list(steps)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                started = time.perf_counter()
                for _ in range(args.block):
                    steps[name]()
                seconds[name].append((time.perf_counter() - started) / args.block)
    base = statistics.median(seconds["default"])
    print("\n| contender | median s/step | min | max | ratio to default |")
    print("|:--|--:|--:|--:|--:|")
    for name, values in seconds.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.4f} | {min(values):.4f} | {max(values):.4f} | {med / base:.3f} |")


if __name__ == "__main__":
    main()
