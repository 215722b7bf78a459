"""Stabilisers for the image discriminator, each a config switch of ``[image]`` (off by default: a
default changes only where it wins at every seed, docs/benchmarks.md).

- ``spectral_norm``: every convolution of D spectrally normalised and its BatchNorm removed (Miyato
  et al. 2018), so D is 1-Lipschitz per layer.
- ``r1_gamma``: the R1 penalty ``gamma / 2 * E ||grad_x D(x)||^2`` on real images in the D step
  (Mescheder et al. 2018; ``mmgan.losses.r1_penalty``).
- ``augment``: differentiable augmentation of every image D sees, real and generated, in training
  (Zhao et al. 2020): any of ``color``, ``translation``, ``cutout``, comma-separated. Its random
  numbers come from a generator of its own, seeded from the run's seed, the number of calls so far (a
  buffer, saved in checkpoints) and the process rank, so resume is exact.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

AUGMENTS = ("color", "translation", "cutout")


def parse_augment(text: str) -> tuple[str, ...]:
    """The augmentations named in ``text`` ("" for none), each checked."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [n for n in names if n not in AUGMENTS]
    if unknown:
        raise ValueError(f"augment: unknown {', '.join(unknown)}; valid: {', '.join(AUGMENTS)}")
    return names


def _uniform(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device, generator=g).to(x.dtype)


def color(x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
    """Random brightness, saturation and contrast per image."""
    x = x + (_uniform(x, g) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_uniform(x, g) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x, g) + 0.5) + mean


def translation(x: torch.Tensor, g: torch.Generator | None = None, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size in each direction, zero-filled."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b,), device=x.device, generator=g)
    dx = torch.randint(-sw, sw + 1, (b,), device=x.device, generator=g)
    rows = (torch.arange(h, device=x.device)[None, :] - dy[:, None]).clamp(-1, h)  # -1 and h: padding
    cols = (torch.arange(w, device=x.device)[None, :] - dx[:, None]).clamp(-1, w)
    padded = F.pad(x, (1, 1, 1, 1))
    index = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[index, rows[:, :, None] + 1, cols[:, None, :] + 1].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, g: torch.Generator | None = None, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of ``ratio`` of the size at a random place in each image."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device, generator=g)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device, generator=g)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    hole = ((ys - cy).abs() <= ch // 2) & ((xs - cx).abs() <= cw // 2)
    return x * (~hole)[:, None].to(x.dtype)


class AugmentedDiscriminator(nn.Module):
    """``D(augment(x))`` in training, ``D(x)`` in evaluation; the augmentations are differentiable, so G's
    gradient passes through them."""

    def __init__(self, discriminator: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.discriminator = discriminator
        self.names = names
        # drawn from the global generator, which the engine seeds with the run seed before building
        self.register_buffer("seed", torch.randint(0, 2**40, (1,)))
        self.register_buffer("calls", torch.zeros(1, dtype=torch.long))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.training:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
            g = torch.Generator(device=images.device)
            g.manual_seed(int(self.seed) + 1_000_003 * int(self.calls) + 7919 * rank)
            self.calls += 1
            for name in self.names:
                images = {"color": color, "translation": translation, "cutout": cutout}[name](images, g)
        return self.discriminator(images)


def spectrally_normalised(discriminator: nn.Module) -> nn.Module:
    """``discriminator`` with spectral norm on every convolution and its BatchNorm layers removed."""
    for name, child in discriminator.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(discriminator, name, nn.Identity())
        elif isinstance(child, nn.Conv2d):
            setattr(discriminator, name, nn.utils.parametrizations.spectral_norm(child))
        else:
            spectrally_normalised(child)
    return discriminator
