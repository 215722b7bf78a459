"""The training precision a run resolves ``train.mixed_precision`` to.

``"auto"`` (the default) trains in bf16 where the device computes it natively (a CPU with AVX512-BF16
or AMX, an Arm CPU with BF16, a CUDA GPU that supports it) and every modality of the run declares that
its quality in bf16 was measured within fp32's seed-to-seed spread (``Modality.bf16``); everywhere else
in fp32. bf16 emulated on a CPU without those instructions is many times slower than fp32, so it is
never chosen there. An explicit setting wins: ``"no"``, ``"bf16"`` or ``"fp16"`` in the config, or
``accelerate launch --mixed_precision`` (Accelerate passes it in ``ACCELERATE_MIXED_PRECISION``).
``""`` (configs from before ``auto`` existed) leaves the choice to Accelerate, as it always did.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch

from mmgan.contract.modality import Modality

SETTINGS = ("auto", "no", "bf16", "fp16", "")
# /proc/cpuinfo flags of CPUs that compute bf16 dot products in hardware (x86 and Arm)
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The feature flags of this CPU as Linux lists them (``flags`` on x86, ``Features`` on Arm); empty
    where there is no /proc/cpuinfo (macOS, Windows)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return frozenset(flags)


def native_bf16(device: torch.device, flags: Iterable[str] | None = None) -> bool:
    """Whether ``device`` computes bf16 natively (``flags``: the CPU's, read from /proc/cpuinfo if None)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        if flags is None:
            if platform.system() == "Darwin" and platform.machine() == "arm64":
                return False  # Apple's CPUs: no bf16 matrix units that torch's CPU kernels use
            flags = cpu_flags()
        return bool(NATIVE_BF16_FLAGS & set(flags))
    return False


def resolve_precision(setting: str, modalities: Sequence[Modality], device: torch.device,
                      env: Mapping[str, str] | None = None,
                      flags: Iterable[str] | None = None) -> tuple[str | None, str]:
    """``(precision for Accelerator, why)``: ``"no"``, ``"bf16"`` or ``"fp16"``, or None for Accelerate's
    own choice (``accelerate launch`` / ``accelerate config``), with a reason for the run's log."""
    env = os.environ if env is None else env
    if setting not in SETTINGS:
        raise ValueError(f"train.mixed_precision must be auto, no, bf16 or fp16, got {setting!r}")
    if setting in ("no", "bf16", "fp16"):
        return setting, "train.mixed_precision"
    launched = env.get("ACCELERATE_MIXED_PRECISION")
    if setting == "" or launched:
        return None, f"accelerate launch ({launched})" if launched else "Accelerate's setting"
    if not native_bf16(device, flags):
        return "no", f"auto: no native bf16 on {device.type}"
    unmeasured = [m.name for m in modalities if not m.bf16]
    if unmeasured:
        return "no", f"auto: {', '.join(unmeasured)} not measured in bf16"
    return "bf16", f"auto: native bf16 on {device.type}"
