"""What the benchmarks here share: the machine description they print, and mmgan's step as a callable."""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any

import torch


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or what ``platform`` knows."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_header(threads: int) -> dict[str, object]:
    """Date, command line, platform, CPU, core count, torch version and thread count, printed as it goes."""
    header = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": shlex.join([os.path.basename(sys.executable), *sys.argv]),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": threads,
    }
    for key, value in header.items():
        print(f"{key}: {value}")
    return header


def trainer_step_fn(trainer: Any) -> Callable[[], None]:
    """One ``Trainer.train_step`` per call, on the trainer's own endless batches, as ``fit()`` runs it."""
    batches = trainer.batches()

    def step() -> None:
        trainer.train_step(batches)
        trainer.step += 1  # as fit() does: the EMA warm-up reads it

    return step
