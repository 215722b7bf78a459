"""The ``wave`` modality: 1-D signals of ``length`` samples, declared once as a ModalityPlugin.

The generator is ``head(trunk(stem(z)))``: the stem turns noise into ``tokens`` tokens of the shared
trunk's width, the trunk (mmgan's, shared by every modality of a run) mixes them, and the head turns
each token back into ``length // tokens`` samples.

mmgan imports this module whenever its CLI starts (``mmgan --help`` included), so it holds only the
declaration: torch, the networks, the data and PIL are imported inside the methods that use them. Put
your own networks and datasets in modules of this package and import them there too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmgan.api import DataError, Modality, ModalityConfig, ModalityPlugin, atomic_path

if TYPE_CHECKING:
    import torch
    from torch import nn

NAME = "wave"


@dataclass
class SignalConfig(ModalityConfig):
    """The ``[wave]`` section of a run's config."""

    # builtin:wave (random sums of sinusoids) is the only source this skeleton reads
    data: str = "builtin:wave"
    # samples per signal
    length: int = 64
    # tokens the stem emits (length must be a multiple)
    tokens: int = 8
    # the length of the noise vector z
    nz: int = 16
    # hidden units of the discriminator's MLP
    hidden: int = 128
    # signals in the built-in set
    num_signals: int = 4096

    def validate(self) -> None:
        if self.length < 1 or self.tokens < 1 or self.length % self.tokens:
            raise ValueError(f"length ({self.length}) must be a positive multiple of tokens ({self.tokens})")
        for key in ("nz", "hidden", "num_signals"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")


def sinusoids(config: SignalConfig, seed: int) -> torch.Tensor:
    """``num_signals`` sums of two sinusoids with random frequencies and phases, amplitude within [-1, 1];
    a function of ``seed``. The (num_signals, length) tensor is the dataset: item i is signal i."""
    import math

    import torch

    g = torch.Generator().manual_seed(seed)
    n, t = config.num_signals, torch.arange(config.length) / config.length
    freq = torch.randint(1, 6, (n, 2), generator=g).float()
    phase = torch.rand(n, 2, generator=g) * 2 * math.pi
    waves = torch.sin(2 * math.pi * freq[:, :, None] * t + phase[:, :, None]).sum(1)
    return (waves / 2).float()


def noise(n: int, config: SignalConfig, generator: torch.Generator) -> torch.Tensor:
    import torch

    return torch.randn(n, config.nz, generator=generator)


def noise_for_batch(real: torch.Tensor, config: SignalConfig, generator: torch.Generator) -> torch.Tensor:
    return noise(real.shape[0], config, generator)


def plot(samples: torch.Tensor, path: Path) -> Path:
    """Up to 16 signals as a 4x4 grid of line plots, written atomically."""
    from PIL import Image, ImageDraw

    cell, rows = 96, 4
    picture = Image.new("RGB", (cell * rows, cell * rows), "white")
    draw = ImageDraw.Draw(picture)
    for i, signal in enumerate(samples[: rows * rows].float().clamp(-1, 1)):
        x0, y0 = (i % rows) * cell, (i // rows) * cell
        xs = [x0 + 4 + (cell - 8) * k / max(len(signal) - 1, 1) for k in range(len(signal))]
        ys = [y0 + cell / 2 - (cell / 2 - 4) * v for v in signal.tolist()]
        draw.line(list(zip(xs, ys, strict=True)), fill=(30, 60, 160), width=1)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
    return path


class SignalPlugin(ModalityPlugin):
    modality = Modality(name=NAME, config_class=SignalConfig, make_input=noise_for_batch, sample_input=noise,
                        description="1-D signals (a plugin skeleton from mmgan new-plugin)",
                        train_defaults={"batch_size": 64})

    def build_generator(self, config: SignalConfig, width: int) -> tuple[nn.Module, nn.Module]:
        from torch import nn

        # z (B, nz) -> tokens (B, width, tokens)
        stem = nn.Sequential(nn.Linear(config.nz, width * config.tokens), nn.ReLU(),
                             nn.Unflatten(1, (width, config.tokens)))
        # each token (B, width) -> its length // tokens samples, token after token: (B, length)
        per_token = config.length // config.tokens
        head = nn.Sequential(nn.ConvTranspose1d(width, 1, per_token, stride=per_token), nn.Tanh(), nn.Flatten(1))
        return stem, head

    def build_discriminator(self, config: SignalConfig) -> nn.Module:
        from torch import nn

        return nn.Sequential(nn.Linear(config.length, config.hidden), nn.LeakyReLU(0.2),
                             nn.Linear(config.hidden, config.hidden), nn.LeakyReLU(0.2),
                             nn.Linear(config.hidden, 1), nn.Flatten(0))

    def read_data(self, source: str, config: SignalConfig, seed: int) -> torch.utils.data.Dataset | None:
        if source != f"builtin:{NAME}":
            if source.startswith("builtin:"):
                raise DataError(f"unknown built-in source {source!r} for {NAME}; valid: builtin:{NAME}")
            return None  # a path: another plugin may read it
        return sinusoids(config, seed)

    def write_samples(self, samples: torch.Tensor, path: Path, config: SignalConfig,
                      real: torch.Tensor | None) -> list[Path]:
        path = Path(path)
        return [plot(samples, path if path.suffix else path.with_suffix(".png"))]


# the object the entry point names
plugin = SignalPlugin()
