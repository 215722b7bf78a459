"""A modality written against contract 6's per-modality hooks, as hooks.md taught it: module functions,
each starting with ``if modality != NAME: return None``. Kept unchanged to prove it still trains."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click
import torch
from torch import nn

import mmgan
from mmgan.files import atomic_path
from mmgan.modality import Modality, ModalityConfig

NAME = "pulse"


@dataclass
class PulseConfig(ModalityConfig):
    data: str = "builtin:pulses"
    length: int = 16


class PulseData(torch.utils.data.Dataset):
    def __init__(self, config: PulseConfig, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        centres = torch.randint(2, config.length - 2, (64, 1), generator=g)
        grid = torch.arange(config.length).unsqueeze(0)
        self.items = torch.exp(-0.5 * (grid - centres).float() ** 2).unsqueeze(1)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.items[i]


class Stem(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.proj = nn.Linear(8, width * 4)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.proj(z).view(z.shape[0], self.width, 4)


class Head(nn.Module):
    def __init__(self, width: int, length: int) -> None:
        super().__init__()
        self.out = nn.Linear(width * 4, length)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.out(tokens.flatten(1))).unsqueeze(1)


@mmgan.hookimpl
def mmgan_register_modalities(register):
    register(Modality(name=NAME, config_class=PulseConfig,
                      make_input=lambda real, config, gen: torch.randn(real.shape[0], 8, generator=gen),
                      sample_input=lambda n, config, gen: torch.randn(n, 8, generator=gen), eval_samples=32))


@mmgan.hookimpl
def mmgan_build_generator(modality, config, width):
    if modality != NAME:
        return None
    return Stem(width), Head(width, config.length)


@mmgan.hookimpl
def mmgan_build_discriminator(modality, config):
    if modality != NAME:
        return None
    return nn.Sequential(nn.Flatten(), nn.Linear(config.length, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))


@mmgan.hookimpl
def mmgan_read_data(modality, source, config, seed):
    if modality != NAME or source != "builtin:pulses":
        return None
    return PulseData(config, seed)


@mmgan.hookimpl
def mmgan_write_samples(modality, samples, path, config, real):
    if modality != NAME:
        return None
    path = Path(path).with_suffix(".txt")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(" ".join(f"{v:.3f}" for v in row) for row in samples.flatten(1).tolist()))
    return [path]


@mmgan.hookimpl
def mmgan_generator_loss_terms(ctx):
    if ctx.modality != NAME:
        return None
    return {"centre": 0.1 * (ctx.real.mean() - ctx.fake.mean()).abs()}


@mmgan.hookimpl
def mmgan_evaluate(ctx):
    if ctx.modality.name != NAME:
        return None
    real, fake = torch.cat(list(ctx.real_batches())), torch.cat(list(ctx.fake_batches()))
    return {"peak_gap": (real.amax(-1).mean() - fake.amax(-1).mean()).abs().item()}


@mmgan.hookimpl
def mmgan_command_options(command, add):
    if command == "eval":
        add(click.Option(["--pulse-note"], default=None, help="a note (pulse plugin)"))
