"""A run whose losses or weights become non-finite stops at that step, and writes nothing from that state.

A NaN or inf in a loss spreads to every weight in one update; from then on each checkpoint, export and
evaluation would be of broken weights, and checkpoint rotation would delete the good ones. So every step's
losses are checked (all processes agree, one small all-reduce), and before any sample, evaluation,
checkpoint or export the weights are too; either failing raises :class:`TrainingDiverged` naming the
modality and the loss term (or the network), and the last checkpoint, written from finite weights, stays.
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn

from mmgan import checkpoint
from mmgan.errors import TrainingDiverged


def nonfinite_losses(losses: dict[str, torch.Tensor]) -> list[str]:
    """The names of the losses that are NaN or inf."""
    if not losses:
        return []
    finite = torch.isfinite(torch.stack([v.detach().float().reshape(()) for v in losses.values()])).tolist()
    return [name for name, ok in zip(losses, finite, strict=True) if not ok]


def nonfinite_weights(modules: dict[str, nn.Module]) -> list[str]:
    """``<module>.<parameter or buffer>`` of the first non-finite tensor of each module that has one."""
    found = []
    for label, module in modules.items():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                found.append(f"{label}.{name}")
                break
    return found


def _agree(accelerator: Accelerator, bad: bool) -> bool:
    """Whether any process found something non-finite (every process calls this at the same step)."""
    if accelerator.num_processes == 1:
        return bad
    flag = torch.tensor([1.0 if bad else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum").item() > 0)


def check_losses(accelerator: Accelerator, losses: dict[str, torch.Tensor], step: int, run_dir: Path) -> None:
    """A TrainingDiverged naming each non-finite loss (``<modality>/<kind>/<term>``) of step ``step``."""
    bad = nonfinite_losses(losses)
    if _agree(accelerator, bool(bad)):
        what = ", ".join(bad) if bad else "a loss of another process"
        raise TrainingDiverged(f"step {step}: the loss {what} is not finite (NaN or inf): the run stopped "
                               f"without writing anything from that state; {_resume_hint(run_dir)}")


def check_weights(accelerator: Accelerator, modules: dict[str, nn.Module], step: int, run_dir: Path) -> None:
    """A TrainingDiverged naming the first non-finite weight of each network, before anything is written."""
    bad = nonfinite_weights(modules)
    if _agree(accelerator, bool(bad)):
        what = ", ".join(bad) if bad else "the weights of another process"
        raise TrainingDiverged(f"step {step}: non-finite weights ({what}): the run stopped without writing "
                               f"samples, evaluations, a checkpoint or an export of them; {_resume_hint(run_dir)}")


def _resume_hint(run_dir: Path) -> str:
    saved = checkpoint.checkpoint_dirs(run_dir)
    if not saved:
        return "no checkpoint was written before it: start again with lower learning rates (train.lr_g, train.lr_d)"
    step = checkpoint.checkpoint_step(saved[-1])
    return (f"continue from the finite checkpoint of step {step} with lower learning rates: mmgan run --resume "
            f"{run_dir} --set train.lr_g=... --set train.lr_d=...")
