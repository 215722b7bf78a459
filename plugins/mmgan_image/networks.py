"""DCGAN (Radford et al. 2015) split around mmgan's shared trunk, at 64x64 (the paper) or 32x32.

The paper's generator is z -> 4x4x(8*ngf) -> transposed convolutions -> 64x64x3. Here its first layer is
the stem (emitting the 4x4 grid as 16 tokens of the trunk's width), the trunk sits between, and the
remaining transposed convolutions are the head. BatchNorm and ReLU in G, LeakyReLU(0.2) in D, tanh
output, every weight drawn from N(0, 0.02) as in section 4 of the paper.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def init_dcgan_weights(module: nn.Module) -> None:
    """Conv weights ~ N(0, 0.02); BatchNorm scale ~ N(1, 0.02), shift 0 (the paper's initialisation)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _upsamplings(image_size: int) -> int:
    n = int(math.log2(image_size)) - 2
    if image_size not in (32, 64):
        raise ValueError(f"DCGAN supports image_size 32 or 64, got {image_size}")
    return n


class DCGANStem(nn.Module):
    """z (B, nz) -> 4x4 feature grid -> tokens (B, width, 16)."""

    def __init__(self, nz: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz, width, 4, 1, 0, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
        )
        init_dcgan_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1)).flatten(2)


class DCGANHead(nn.Module):
    """Tokens (B, width, 16) -> 4x4 grid -> transposed convolutions doubling to 32x32 or 64x64 RGB."""

    def __init__(self, width: int, ngf: int, image_size: int, channels: int = 3) -> None:
        super().__init__()
        n = _upsamplings(image_size)
        layers: list[nn.Module] = []
        in_ch = width
        for i in range(n - 1):
            out_ch = ngf * 2 ** (n - 2 - i)  # 64x64: 4ngf, 2ngf, ngf; 32x32: 2ngf, ngf
            layers += [nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(True)]
            in_ch = out_ch
        layers += [nn.ConvTranspose2d(in_ch, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_dcgan_weights(self)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, c, t = tokens.shape
        side = math.isqrt(t)
        return self.net(tokens.reshape(b, c, side, side))


class DCGANDiscriminator(nn.Module):
    """Strided convolutions halving to 4x4, then a 4x4 convolution to one logit per image."""

    def __init__(self, ndf: int, image_size: int, channels: int = 3) -> None:
        super().__init__()
        n = _upsamplings(image_size)
        layers: list[nn.Module] = [nn.Conv2d(channels, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        ch = ndf
        for _ in range(n - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2),
                       nn.LeakyReLU(0.2, inplace=True)]
            ch *= 2
        layers.append(nn.Conv2d(ch, 1, 4, 1, 0, bias=False))
        self.net = nn.Sequential(*layers)
        init_dcgan_weights(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).flatten()
