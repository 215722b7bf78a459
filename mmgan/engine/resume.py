"""Checkpoints that make resume exact: Accelerate's state plus the EMA generator and every rank's noise."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn

from mmgan import __version__, checkpoint
from mmgan.errors import CheckpointError

log = logging.getLogger("mmgan")


def save_checkpoint(accelerator: Accelerator, run_dir: Path, step: int, ema: nn.Module, noise: torch.Generator,
                    keep: int, on_published: Callable[[], None], meta: dict[str, Any] | None = None) -> None:
    """Save resumable state under a staging name, then rename: the previous one stays valid until then.

    Every rank calls this; rank 0 alone writes mmgan's own state, publishes, then calls ``on_published``
    (the export). ``meta`` (JSON) is saved beside the step and comes back from :func:`load_checkpoint`.
    """
    acc = accelerator
    staging = checkpoint.staging_dir(run_dir, step)
    acc.wait_for_everyone()
    acc.save_state(str(staging))
    # each rank draws its own noise: keep every rank's generator state, one row per rank
    noise_states = noise.get_state()[None]
    if acc.num_processes > 1:
        noise_states = acc.gather(noise_states.to(acc.device)).cpu()
    acc.wait_for_everyone()  # every rank's RNG file is in the staging directory before the rename
    if acc.is_main_process:
        tensors = {f"ema.{k}": v for k, v in ema.state_dict().items()}
        tensors["noise_rng"] = noise_states
        checkpoint.write_extra_state(staging, step, tensors, {"mmgan_version": __version__, **(meta or {})})
        checkpoint.publish_checkpoint(run_dir, step, keep)
        on_published()
    acc.wait_for_everyone()


def load_checkpoint(accelerator: Accelerator, run_dir: Path, ema: nn.Module, noise: torch.Generator,
                    seed: int) -> tuple[int, dict[str, Any]]:
    """Restore the newest checkpoint of ``run_dir`` into the prepared objects; returns its step and the
    ``meta`` saved with it."""
    directory = checkpoint.latest_checkpoint(run_dir)
    step, tensors, meta = checkpoint.read_extra_state(directory)
    try:
        accelerator.load_state(str(directory))
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        # every rank saved its own RNGs in Accelerate's files, and its noise RNG as one row here
        restore_noise(accelerator, noise, tensors["noise_rng"], seed, step)
    except Exception as exc:  # whatever a damaged file raises (safetensors, unpickling, shapes), one line
        first = (str(exc).splitlines() or [""])[0]
        raise CheckpointError(f"checkpoint {directory} cannot be loaded: {type(exc).__name__}: {first}") from None
    log.info("resumed %s from step %d", run_dir, step)
    return step, meta


def noise_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s noise generator in a run seeded ``seed``."""
    return seed * 7919 + 1 + rank


def restore_noise(accelerator: Accelerator, noise: torch.Generator, states: torch.Tensor, seed: int,
                  step: int) -> None:
    """This rank's row of the saved noise states; fresh, distinct streams if the process count changed."""
    acc = accelerator
    states = states if states.dim() == 2 else states[None]
    if states.shape[0] == acc.num_processes:
        # a copy, not a row view: Generator.set_state reads a view's storage from its start
        noise.set_state(states[acc.process_index].clone())
        return
    if acc.is_main_process:
        log.warning("checkpoint was written by %d process(es), resuming with %d: noise and data order "
                    "differ from an unbroken run", states.shape[0], acc.num_processes)
    noise.manual_seed(noise_seed(seed, acc.process_index) + 1_000_003 * (step + 1))
