"""The device a command runs on, checked: a device that does not exist is a one-line error."""

from __future__ import annotations

import torch

from mmgan.errors import ConfigError


def resolve_device(text: str | torch.device | None, option: str = "--device") -> torch.device:
    """``text`` as a torch device that exists here (None: the first GPU if there is one, else the CPU)."""
    if text is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"{option} {text!r} is not a device: {exc}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise ConfigError(f"{option} {text}: {why}; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{option} {text}: there are {torch.cuda.device_count()} GPU(s) (cuda:0 to "
                              f"cuda:{torch.cuda.device_count() - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{option} {text}: MPS is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{option} {text}: mmgan runs on cpu, cuda or mps")
    return device
