"""The machine description every benchmark prints beside its numbers (imported by the scripts here)."""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import sys
import time

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
