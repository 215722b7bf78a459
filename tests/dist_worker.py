"""Run under `accelerate launch` by tests/test_distributed.py: trains, then dumps what each rank holds.

    dist_worker.py train OUT [mmgan run options...]   fit, then OUT/rank<r>.safetensors: G, D and EMA weights
    dist_worker.py grads OUT [mmgan run options...]   one step, then OUT/grads<r>.safetensors: G and D gradients

In "grads" mode the image generator's input is a fixed function of each real sample instead of fresh
noise, so that a 2-process step and a 1-process step see the same inputs for the same samples.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from mmgan import config as cfg
from mmgan.cli import run as run_command
from mmgan.engine import Trainer
from mmgan.plugins import get_modality


def noise_from_sample(real: torch.Tensor, config: object, generator: torch.Generator) -> torch.Tensor:
    """A deterministic stand-in for noise: a fixed random projection of each image to nz values."""
    flat = real.reshape(real.shape[0], -1).float()
    projection = torch.randn(flat.shape[1], config.nz, generator=torch.Generator().manual_seed(7))
    return flat @ projection.to(flat.device) / flat.shape[1] ** 0.5


def build(argv: list[str], resume: bool = False) -> Trainer:
    ctx = run_command.make_context("run", argv)
    p = ctx.params
    config = cfg.resolve(get_modality, plugins=p["plugins"], data=p["data"], steps=p["steps"],
                         batch_size=p["batch_size"], seed=p["seed"], out=p["out"], overrides=p["overrides"])
    return Trainer(config, resume=resume, progress=False)


def flat(module: torch.nn.Module, grads: bool = False) -> dict[str, torch.Tensor]:
    out = {}
    for key, param in module.named_parameters():
        value = param.grad if grads else param
        if value is not None:
            out[key] = value.detach().float().cpu().contiguous()
    if not grads:
        out.update({f"buffer.{k}": v.detach().float().cpu().contiguous() for k, v in module.named_buffers()})
    return out


def main(mode: str, out: str, argv: list[str]) -> None:
    trainer = build(argv)
    acc = trainer.accelerator
    rank = acc.process_index
    if mode == "train":
        trainer.fit()  # ends with the process group gone: no collective after this
        tensors = {f"G.{k}": v for k, v in flat(acc.unwrap_model(trainer.G)).items()}
        tensors.update({f"D.{k}": v for k, v in flat(trainer.D_module).items()})
        tensors.update({f"ema.{k}": v for k, v in flat(trainer.ema).items()})
        save_file(tensors, str(Path(out) / f"rank{rank}.safetensors"))
    elif mode == "grads":
        if "image" in trainer.modalities:
            trainer.modalities["image"] = dataclasses.replace(trainer.modalities["image"], make_input=noise_from_sample)
        batches = trainer.batches()
        trainer.train_step(batches)
        tensors = {f"G.{k}": v for k, v in flat(acc.unwrap_model(trainer.G), grads=True).items()}
        tensors.update({f"D.{k}": v for k, v in flat(trainer.D_module, grads=True).items()})
        save_file(tensors, str(Path(out) / f"grads{rank}.safetensors"))
        acc.wait_for_everyone()
        acc.end_training()
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
