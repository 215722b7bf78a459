"""The ``image`` modality: DCGAN through mmgan's hooks, registered as the ``image`` entry point.

This module is imported whenever the CLI starts (``mmgan --help`` included), so it declares the modality
and imports torch, the networks, the data and the metrics inside the methods that use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mmgan.compat.metrics import moved_to_plugin
from mmgan.contract.modality import Modality, ModalityConfig, engine_default
from mmgan.contract.plugin import ModalityPlugin, hookimpl
from mmgan.errors import DataError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from mmgan.evaluation.scoring import EvalContext
    from mmgan.losses import LossContext
    from mmgan.report.section import ReportContext, ReportSection
    from mmgan_image.shards import ImageCodec

NAME = "image"


@dataclass
class ImageConfig(ModalityConfig):
    """DCGAN sizes: the paper's nz=100, ngf=ndf=64.

    ``image_size`` 64 is the paper's network; the default is its 32x32 variant, so that the default run
    trains to clearly recognisable samples within its 15-minute budget on 2 CPU cores (its time:
    docs/benchmarks.md#training-throughput).
    """

    # builtin:shapes, a folder of png/jpg/webp images, or WebDataset shards
    data: str = engine_default("builtin:shapes")
    # 32 or 64 pixels square (64 is the paper's network)
    image_size: int = 32
    # the length of the noise vector z; 1 to 16384
    nz: int = 100
    # generator head channels: 4*ngf, 2*ngf, ngf before the RGB layer (64x64); 1 to 4096
    ngf: int = 64
    # discriminator channels: ndf, 2*ndf, ... doubling at each halving; 1 to 4096
    ndf: int = 64
    # blocks of the shared trunk the image generator goes through: one
    # (docs/benchmarks.md#the-shared-trunk-and-several-modalities)
    trunk_depth: int = engine_default(1)
    # with periodic evaluation (train.eval_every), keep the export with the lowest Frechet distance
    select_by: str = engine_default("fd")
    # D stabilisers (mmgan_image.stabilisers), off by default: spectral norm on D's convolutions (and no
    # BatchNorm in D)
    spectral_norm: bool = False
    # the R1 penalty's gamma on real images (0: off)
    r1_gamma: float = 0.0
    # differentiable augmentation of what D sees: any of color, translation, cutout (comma-separated)
    augment: str = ""

    def validate(self) -> None:
        if self.image_size not in (32, 64):
            raise ValueError(f"image_size must be 32 or 64, got {self.image_size}")
        # generous ranges that only stop sizes no network could be built from; mmgan.config.sizes checks the memory
        for name, high in (("nz", 16384), ("ngf", 4096), ("ndf", 4096)):
            if not 1 <= getattr(self, name) <= high:
                raise ValueError(f"{name} must be between 1 and {high}, got {getattr(self, name)}")
        if not self.r1_gamma >= 0:
            raise ValueError(f"r1_gamma must be >= 0, got {self.r1_gamma}")
        parse_augment(self.augment)


def parse_augment(text: str) -> tuple[str, ...]:
    """The augmentations named in ``text``, checked (``mmgan_image.stabilisers``, which imports torch)."""
    from mmgan_image.stabilisers import parse_augment as parse

    return parse(text)


def noise(n: int, config: ImageConfig, generator: torch.Generator) -> torch.Tensor:
    """z ~ N(0, I) of shape (n, nz)."""
    import torch

    return torch.randn(n, config.nz, generator=generator)


def noise_for_batch(real: torch.Tensor, config: ImageConfig, generator: torch.Generator) -> torch.Tensor:
    return noise(real.shape[0], config, generator)


class ImagePlugin(ModalityPlugin):
    """DCGAN declared once: mmgan asks this object for the ``image`` modality's parts."""

    modality = Modality(
        name=NAME,
        config_class=ImageConfig,
        make_input=noise_for_batch,
        sample_input=noise,
        description="DCGAN (Radford et al. 2015), 32x32 or 64x64 RGB",
        # tiny networks for tests (mmgan.testing.tiny_run)
        test_settings=("image.image_size=32", "image.ngf=8", "image.ndf=8", "image.nz=16"),
        # ema_decay 0: on builtin:shapes DCGAN's averaged weights sampled worse than its live ones at every
        # measured seed (on photographs the EMA copy was better:
        # docs/benchmarks.md#image-quality-the-default-against-the-bare-dcgan-loop); eval_every with select_by
        # keeps the best export of the run
        train_defaults={"steps": 5000, "batch_size": 32, "ema_decay": 0.0, "eval_every": 500},
        # the default run in bf16 scored within fp32's seed-to-seed spread at 3 seeds
        # (docs/benchmarks.md#image-quality-the-default-against-the-bare-dcgan-loop):
        # train.mixed_precision=auto trains it in bf16 where the hardware computes bf16 natively
        bf16=True,
    )
    metric_goals = {"swd_32": "min", "swd_16": "min", "swd": "min", "fd": "min", "kid": "min", "fid": "min",
                    "precision": "max", "recall": "max", "mode_coverage": "max"}

    def build_generator(self, config: ImageConfig, width: int) -> tuple[nn.Module, nn.Module]:
        from mmgan_image.networks import DCGANHead, DCGANStem

        return DCGANStem(config.nz, width), DCGANHead(width, config.ngf, config.image_size)

    def build_discriminator(self, config: ImageConfig) -> nn.Module:
        from mmgan_image.networks import DCGANDiscriminator
        from mmgan_image.stabilisers import AugmentedDiscriminator, spectrally_normalised

        disc: nn.Module = DCGANDiscriminator(config.ndf, config.image_size)
        if config.spectral_norm:
            disc = spectrally_normalised(disc)
        augments = parse_augment(config.augment)
        return AugmentedDiscriminator(disc, augments) if augments else disc

    def discriminator_loss_terms(self, ctx: LossContext) -> dict[str, torch.Tensor] | None:
        from mmgan.losses import r1_penalty

        if not ctx.config.r1_gamma:
            return None
        return {"r1": ctx.config.r1_gamma / 2 * r1_penalty(ctx.discriminator, ctx.real)}

    def read_data(self, source: str, config: ImageConfig, seed: int) -> torch.utils.data.Dataset:
        from mmgan_image.datasets import open_image_source

        return open_image_source(source, config.image_size, seed)

    def shard_codec(self, config: ImageConfig) -> ImageCodec:
        from mmgan_image.shards import ImageCodec

        return ImageCodec(config.image_size)

    def write_samples(self, samples: torch.Tensor, path: Path, config: ImageConfig,
                      real: torch.Tensor | None) -> list[Path]:
        from mmgan_image.grid import save_grid

        path = Path(path)
        try:
            return [save_grid(samples, path if path.suffix else path.with_suffix(".png"))]
        except ValueError as exc:
            raise DataError(str(exc)) from None

    def write_interpolation(self, paths: torch.Tensor, path: Path, config: ImageConfig) -> list[Path]:
        """One grid, a path per row."""
        from mmgan_image.grid import save_grid

        path = Path(path)
        return [save_grid(paths.flatten(0, 1), path if path.suffix else path.with_suffix(".png"), nrow=paths.shape[1])]

    def features(self, samples: torch.Tensor, config: ImageConfig) -> torch.Tensor:
        """Pixels at 16 x 16 (area-averaged), 768 values: near-copies are near here whatever the image size, and
        the collapse watchdog and memorisation check need no network (docs/trust.md)."""
        import torch.nn.functional as F

        return F.adaptive_avg_pool2d(samples.float(), 16).flatten(1)

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        from mmgan_image.metrics import image_metrics

        return image_metrics(ctx)

    def report_section(self, ctx: ReportContext) -> ReportSection | None:
        from mmgan_image.report import image_report_section

        return image_report_section(ctx)

    @hookimpl
    def mmgan_register_commands(self, cli: click.Group) -> None:
        if not hasattr(cli, "add_option"):  # a group other than mmgan's CLI (a test's) has no core commands
            return
        # read by image_metrics as ctx.options["inception_weights"]
        cli.add_option("eval", click.Option(["--inception-weights"], type=click.Path(path_type=Path), metavar="PATH",
                                        help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth: adds the "
                                             "standard FID (images; image plugin)."))


# the object the ``image`` entry point names
plugin = ImagePlugin()


def _swd_module() -> object:
    import mmgan_image.swd

    return mmgan_image.swd


# the pyramid SWD was in mmgan.metrics before it moved here; its old names keep working there until mmgan 1.0
moved_to_plugin(("laplacian_pyramid", "pyramid_sizes", "patch_descriptors", "normalise_descriptors",
                 "sliced_wasserstein_distance"), "mmgan_image.swd", _swd_module)
