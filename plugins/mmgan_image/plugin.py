"""The ``image`` modality: DCGAN through mmgan's hooks, registered as the ``image`` entry point."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import mmgan
from mmgan.errors import DataError
from mmgan.modality import Modality, ModalityConfig
from mmgan_image.datasets import open_image_source
from mmgan_image.grid import save_grid
from mmgan_image.metrics import mmgan_evaluate, mmgan_register_metrics  # noqa: F401 - this plugin's metric hooks
from mmgan_image.networks import DCGANDiscriminator, DCGANHead, DCGANStem
from mmgan_image.shards import ImageCodec

NAME = "image"


@dataclass
class ImageConfig(ModalityConfig):
    """DCGAN sizes: the paper's nz=100, ngf=ndf=64.

    ``image_size`` 64 is the paper's network; the default is its 32x32 variant, so that the default run
    trains to clearly recognisable samples within 15 minutes on 2 CPU cores (docs/benchmarks.md).
    """

    # builtin:shapes, a folder of png/jpg/webp images, or WebDataset shards
    data: str = "builtin:shapes"
    # 32 or 64 pixels square (64 is the paper's network)
    image_size: int = 32
    # the length of the noise vector z
    nz: int = 100
    # generator head channels: 4*ngf, 2*ngf, ngf before the RGB layer (64x64)
    ngf: int = 64
    # discriminator channels: ndf, 2*ndf, ... doubling at each halving
    ndf: int = 64

    def validate(self) -> None:
        if self.image_size not in (32, 64):
            raise ValueError(f"image_size must be 32 or 64, got {self.image_size}")
        for name in ("nz", "ngf", "ndf"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


def noise(n: int, config: ImageConfig, generator: torch.Generator) -> torch.Tensor:
    """z ~ N(0, I) of shape (n, nz)."""
    return torch.randn(n, config.nz, generator=generator)


def noise_for_batch(real: torch.Tensor, config: ImageConfig, generator: torch.Generator) -> torch.Tensor:
    return noise(real.shape[0], config, generator)


@mmgan.hookimpl
def mmgan_register_modalities(register: Callable[[Modality], None]) -> None:
    register(Modality(
        name=NAME,
        config_class=ImageConfig,
        make_input=noise_for_batch,
        sample_input=noise,
        description="DCGAN (Radford et al. 2015), 32x32 or 64x64 RGB",
        train_defaults={"steps": 5000, "batch_size": 32},
    ))


@mmgan.hookimpl
def mmgan_build_generator(modality: str, config: ImageConfig, width: int) -> tuple[nn.Module, nn.Module] | None:
    if modality != NAME:
        return None
    return DCGANStem(config.nz, width), DCGANHead(width, config.ngf, config.image_size)


@mmgan.hookimpl
def mmgan_build_discriminator(modality: str, config: ImageConfig) -> nn.Module | None:
    if modality != NAME:
        return None
    return DCGANDiscriminator(config.ndf, config.image_size)


@mmgan.hookimpl
def mmgan_read_data(modality: str, source: str, config: ImageConfig, seed: int) -> torch.utils.data.Dataset | None:
    if modality != NAME:
        return None
    return open_image_source(source, config.image_size, seed)


@mmgan.hookimpl
def mmgan_shard_codec(modality: str, config: ImageConfig) -> ImageCodec | None:
    if modality != NAME:
        return None
    return ImageCodec(config.image_size)


@mmgan.hookimpl
def mmgan_write_samples(
    modality: str, samples: torch.Tensor, path: Path, config: ImageConfig, real: torch.Tensor | None
) -> list[Path] | None:
    if modality != NAME:
        return None
    path = Path(path)
    try:
        return [save_grid(samples, path if path.suffix else path.with_suffix(".png"))]
    except ValueError as exc:
        raise DataError(str(exc)) from None
