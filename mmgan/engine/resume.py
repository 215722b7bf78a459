"""Checkpoints that make resume exact: Accelerate's state plus the EMA generator and every rank's noise."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn

from mmgan import __version__, checkpoint
from mmgan.errors import CheckpointError, StorageError, first_line
from mmgan.files import describe_os_error, free_bytes, tree_bytes

log = logging.getLogger("mmgan")


def save_checkpoint(accelerator: Accelerator, run_dir: Path, step: int, ema: nn.Module, noise: torch.Generator,
                    keep: int, on_published: Callable[[], None], meta: dict[str, Any] | None = None,
                    protect: int | None = None) -> None:
    """Save resumable state under a staging name, then rename: the previous one stays valid until then.

    Every rank calls this; rank 0 alone writes mmgan's own state, publishes, then calls ``on_published``
    (the export). ``meta`` (JSON) is saved beside the step and comes back from :func:`load_checkpoint`.
    Rotation keeps the newest ``keep`` and the newest at or before step ``protect``.
    Not enough free space for a checkpoint the size of the last one is a ``StorageError`` before anything
    is written; a write that fails anyway (on any rank) removes the staging directory and is a
    ``StorageError`` on every rank, naming the path and the intact checkpoint to resume from.
    """
    acc = accelerator
    staging = checkpoint.staging_dir(run_dir, step)
    acc.wait_for_everyone()
    problem = preflight(acc, run_dir, step, ema) if acc.is_main_process else None
    _raise_everywhere(acc, problem, run_dir)
    try:
        acc.save_state(str(staging))
    except Exception as exc:  # torch.save / safetensors / OSError: a full disk raises any of them
        problem = _write_failure(staging, exc)
    # each rank draws its own noise: keep every rank's generator state, one row per rank
    noise_states = noise.get_state()[None]
    if acc.num_processes > 1:
        noise_states = acc.gather(noise_states.to(acc.device)).cpu()
    _raise_everywhere(acc, problem, run_dir, staging)
    acc.wait_for_everyone()  # every rank's RNG file is in the staging directory before the rename
    if acc.is_main_process:
        tensors = {f"ema.{k}": v for k, v in ema.state_dict().items()}
        tensors["noise_rng"] = noise_states
        try:
            checkpoint.write_extra_state(staging, step, tensors, {"mmgan_version": __version__, **(meta or {})})
            checkpoint.publish_checkpoint(run_dir, step, keep, protect)
        except StorageError as exc:
            problem = str(exc)
    _raise_everywhere(acc, problem, run_dir, staging)
    if acc.is_main_process:
        on_published()
    acc.wait_for_everyone()


def preflight(acc: Accelerator, run_dir: Path, step: int, ema: nn.Module) -> str | None:
    """Why the checkpoint of ``step`` will not fit on the run's filesystem, or None: it needs about the
    size of the newest checkpoint (or, for the first, of the weights, Adam's moments and the EMA copy)
    plus the export."""
    free = free_bytes(Path(run_dir))
    if free is None:
        return None
    found = checkpoint.checkpoint_dirs(run_dir)
    export = state_bytes(ema)
    if found:
        needed = tree_bytes(found[-1])
    else:
        models = sum(state_bytes(m) for m in acc._models)
        needed = 3 * models + export  # weights, two Adam moments, the EMA copy
    needed = int(needed * 1.05) + export + 2**20
    if free >= needed:
        return None
    return (f"not enough space for the checkpoint of step {step} in {run_dir}: about {needed / 2**20:.1f} MiB "
            f"needed, {free / 2**20:.1f} MiB free")


def state_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def _write_failure(staging: Path, exc: Exception) -> str:
    if isinstance(exc, OSError):
        return describe_os_error(staging, exc)
    free = free_bytes(staging.parent)
    left = "" if free is None else f" ({free / 2**20:.1f} MiB free there)"
    return f"cannot write {staging}: {type(exc).__name__}: {first_line(exc)}{left}"


def _raise_everywhere(acc: Accelerator, problem: str | None, run_dir: Path, staging: Path | None = None) -> None:
    """Raise a StorageError on every rank if any rank has a ``problem`` (so none waits for the others
    forever); rank 0 first removes the staging directory."""
    failed = torch.tensor([float(problem is not None)], device=acc.device)
    if acc.num_processes > 1:
        failed = acc.reduce(failed, reduction="sum")
    if not failed.item():
        return
    if staging is not None and acc.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    message = problem or "another process could not write its part of the checkpoint"
    found = checkpoint.checkpoint_dirs(run_dir)
    if found:
        message += f"; the checkpoint of step {int(found[-1].name.removeprefix('step_'))} is intact"
    raise StorageError(message)


# an optimiser's settings, which come from the config, not from the checkpoint (its moments do)
HYPERPARAMETERS = ("lr", "base_lr", "betas", "eps", "weight_decay")


def load_checkpoint(accelerator: Accelerator, run_dir: Path, ema: nn.Module, noise: torch.Generator,
                    seed: int, optimizers: Sequence[torch.optim.Optimizer] = ()) -> tuple[int, dict[str, Any]]:
    """Restore the newest checkpoint of ``run_dir`` into the prepared objects; returns its step and the
    ``meta`` saved with it.

    Loading an optimiser's state also loads the learning rates and betas it was saved with; those of
    ``optimizers`` are set back to what the run's config gives them, so that ``--resume --set
    train.lr_g=...`` (say, a lower rate for the rest of a run) takes effect, as config.toml records.
    """
    directory = checkpoint.latest_checkpoint(run_dir)
    step, tensors, meta = checkpoint.read_extra_state(directory)
    check_random_states(accelerator, directory)
    configured = [[{k: g[k] for k in HYPERPARAMETERS if k in g} for g in opt.param_groups] for opt in optimizers]
    try:
        accelerator.load_state(str(directory))
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        # every rank saved its own RNGs in Accelerate's files, and its noise RNG as one row here
        restore_noise(accelerator, noise, tensors["noise_rng"], seed, step)
    except Exception as exc:  # whatever a damaged file raises (safetensors, unpickling, shapes), one line
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [""]
        first = lines[0]
        if first.startswith("Error(s) in loading state_dict"):
            # torch lists one mismatch a line under a heading that says nothing: name the first one
            first = f"{first} {lines[1][:300] if len(lines) > 1 else ''}".strip()
            if len(lines) > 2:
                first += f" (and {len(lines) - 2} more)"
            first += "; were network sizes changed (--set) since the checkpoint was written?"
        raise CheckpointError(f"checkpoint {directory} cannot be loaded: {type(exc).__name__}: {first}") from None
    changed = set()
    for opt, groups in zip(optimizers, configured, strict=True):
        for group, settings in zip(opt.param_groups, groups, strict=True):
            changed |= {k for k, v in settings.items() if group.get(k) != v and k != "lr"}
            group.update(settings)
    if changed:
        log.info("resumed with the optimiser settings of the config, changed since the checkpoint (%s)",
                 ", ".join(sorted(changed)))
    log.info("resumed %s from step %d", run_dir, step)
    return step, meta


def check_random_states(accelerator: Accelerator, directory: Path) -> None:
    """Accelerate restores Python's, NumPy's and torch's random states from ``random_states_<rank>.pkl``
    and silently goes on without them when that fails. A file that is there but cannot be read is an
    error here (resume would not be exact); a missing one is a logged fallback (deleting it is how a
    user accepts fresh random states). mmgan's own noise and data order are in its own state file."""
    from accelerate.utils import load
    from accelerate.utils.constants import RNG_STATE_NAME

    path = Path(directory) / f"{RNG_STATE_NAME}_{accelerator.process_index}.pkl"
    if not path.exists():
        log.warning("%s is missing: resuming with fresh Python/NumPy/torch random states (the noise and "
                    "data order are restored; anything else random differs from an unbroken run)", path)
        return
    try:
        states = load(path)
        if not isinstance(states, dict) or "torch_manual_seed" not in states:
            raise ValueError("not a random-state dictionary")
    except Exception as exc:  # torch.load refuses pickles that would run code: that lands here too
        raise CheckpointError(f"cannot read random states {path}: {type(exc).__name__}: {first_line(exc)}; delete "
                              "the file to resume with fresh random states (not an exact resume)") from None


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
