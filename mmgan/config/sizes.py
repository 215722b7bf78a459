"""Network sizes before anything is allocated: the networks built on the meta device (shapes, no memory),
the memory a run or an export will hold estimated from them, and checked against the memory there is.

A config whose sizes are each in range can still ask for more than the machine has (a trunk 8192 wide and
1024 deep); building it would take minutes and end in an allocation traceback. This says so in one line,
before the first real tensor, naming the estimate, what is available and the keys that set the sizes.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from mmgan.config.values import field_types
from mmgan.errors import ConfigError, MMGANError

log = logging.getLogger("mmgan")
Built = TypeVar("Built")

MEMINFO = Path("/proc/meminfo")
# a container's memory limit: cgroup v2, then v1 ("max" or a huge number: none)
CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
# training holds, per trainable parameter, the weight, its gradient and Adam's two moments
TRAINING_COPIES = 4


def build_on_meta(build: Callable[[], Built]) -> Built | None:
    """What ``build()`` returns with its tensors on the meta device: shapes and dtypes, no memory.

    None, logged at debug level, where a network cannot be built there (a plugin's network that computes
    with real tensors while it is built): the check is then skipped, never the run. A user mistake that
    building finds (an MMGANError) is raised as the real build would raise it.
    """
    try:
        with torch.device("meta"):
            return build()
    except MMGANError:
        raise
    except Exception as exc:  # any plugin's code: an estimate is not worth failing a legitimate run for
        log.debug("the networks cannot be built on the meta device (%s: %s); their memory is not checked",
                  type(exc).__name__, exc)
        return None


@dataclass(frozen=True)
class Footprint:
    """Bytes of a module's tensors: its ``trainable`` parameters, and the ``fixed`` ones (frozen
    parameters and buffers, which get no gradient and no optimizer state)."""

    trainable: int = 0
    fixed: int = 0

    @property
    def inference(self) -> int:
        """Bytes of the weights alone."""
        return self.trainable + self.fixed

    def training(self, ema: bool = False) -> int:
        """Bytes training holds: weight, gradient and Adam's two moments of each trainable parameter, the
        fixed tensors, and with ``ema`` a copy of every weight (the EMA generator)."""
        return TRAINING_COPIES * self.trainable + self.fixed + (self.inference if ema else 0)

    def __add__(self, other: Footprint) -> Footprint:
        return Footprint(self.trainable + other.trainable, self.fixed + other.fixed)


def footprint(module: nn.Module, prefixes: Sequence[str] = ("",)) -> Footprint:
    """The footprint of ``module``'s parameters and buffers whose names start with one of ``prefixes``
    (on any device: the meta device's tensors have sizes too)."""
    trainable = fixed = 0
    for name, param in module.named_parameters():
        if name.startswith(tuple(prefixes)):
            size = param.numel() * param.element_size()
            trainable, fixed = (trainable + size, fixed) if param.requires_grad else (trainable, fixed + size)
    fixed += sum(b.numel() * b.element_size() for name, b in module.named_buffers() if name.startswith(tuple(prefixes)))
    return Footprint(trainable, fixed)


@dataclass(frozen=True)
class Part:
    """A piece of the networks, the config keys that set its size (``trunk.width=256, ...``) and the bytes
    it will need."""

    name: str
    settings: str
    need: int


def size_settings(section: str, config: Any, inherited: type | None = None) -> str:
    """``section.key=value`` of ``config``'s integer fields, less those of its base class ``inherited``:
    the keys that set a network's sizes, for an error to name."""
    skip = {f.name for f in dataclasses.fields(inherited)} if inherited is not None else set()
    return ", ".join(f"{section}.{name}={getattr(config, name)}" for name, kind in field_types(config).items()
                     if kind is int and name not in skip)


def host_memory() -> tuple[int, str] | None:
    """Bytes this process can still allocate on the host, and where the number comes from: MemAvailable
    of /proc/meminfo, at most the container's memory limit; None where neither can be read."""
    try:
        found = re.search(r"^MemAvailable:\s+(\d+) kB", MEMINFO.read_text(), re.MULTILINE)
    except OSError:
        found = None
    memory = (int(found.group(1)) * 1024, "MemAvailable") if found else None
    for path in CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < (memory[0] if memory else 2**62):
            memory = (int(text), f"the memory limit of {path}")
        break
    return memory


def available_memory(device: torch.device) -> tuple[int, str] | None:
    """Bytes free for new tensors on ``device`` and where the number comes from; None where unknown
    (a device other than the CPU or CUDA, or one that does not answer)."""
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
        except (RuntimeError, AssertionError, ValueError) as exc:
            log.debug("free memory of %s unknown (%s)", device, exc)
            return None
        return free, f"free on {device}"
    return host_memory() if device.type == "cpu" else None


def human_bytes(size: float) -> str:
    """``size`` bytes as ``512 MB``, ``6.7 GB``, ``48000 GB``."""
    if size < 1e9:
        return f"{size / 1e6:.0f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
    return f"{size / 1e9:.1f} GB" if size < 1e12 else f"{size / 1e9:.0f} GB"


def check_memory(parts: Iterable[Part], device: torch.device, what: str,
                 error: type[MMGANError] = ConfigError) -> int:
    """Raise a one-line ``error`` when ``parts`` need more than ``device`` has free: the estimate, what is
    available, and each part's size and keys, largest first. Returns the estimate in bytes; where the free
    memory is unknown nothing is checked."""
    parts = sorted(parts, key=lambda part: -part.need)
    need = sum(part.need for part in parts)
    found = available_memory(device)
    if found is None:
        log.debug("%s needs about %s; the free memory of %s is unknown, not checked", what, human_bytes(need), device)
        return need
    free, source = found
    log.debug("%s needs about %s of the %s available (%s)", what, human_bytes(need), human_bytes(free), source)
    if need > free:
        sizes = "; ".join(f"{part.name} {human_bytes(part.need)}" + (f" ({part.settings})" if part.settings else "")
                          for part in parts)
        raise error(f"{what} needs about {human_bytes(need)} on {device.type}, more than the {human_bytes(free)} "
                    f"available ({source}): {sizes}; lower those sizes")
    return need
