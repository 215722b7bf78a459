"""The speech discriminators beside MelGAN's multi-scale one: HiFi-GAN's multi-period discriminator (Kong et al.
2020) and a multi-resolution STFT discriminator (UnivNet, Jang et al. 2021, as Vocos uses it), and any
"+"-joined set of them as one module. Written from the papers' descriptions.

Every one returns a ``networks.DiscriminatorOutput``: one logit tensor per sub-discriminator (what mmgan's
adversarial losses average) and, per sub-discriminator, the activation after each hidden layer (what
``feature_matching_loss`` compares), so the losses of the speech plugin serve them all unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from mmgan_speech.losses import STFT_RESOLUTIONS
from mmgan_speech.networks import DiscriminatorOutput, MultiScaleDiscriminator, ReflectionPad1d

__all__ = [
    "DISCRIMINATORS",
    "CombinedDiscriminator",
    "MultiPeriodDiscriminator",
    "MultiResolutionDiscriminator",
    "PeriodDiscriminator",
    "ResolutionDiscriminator",
    "build_discriminators",
    "mpd_widths",
]

LEAKY_SLOPE = 0.1  # HiFi-GAN's, for both kinds here
PERIODS = (2, 3, 5, 7, 11)  # HiFi-GAN's: primes, so the periods overlap as little as possible
DISCRIMINATORS = ("msd", "mpd", "mrd")


def _as_batch(wave: torch.Tensor, who: str) -> torch.Tensor:
    if wave.dim() == 2:
        wave = wave.unsqueeze(1)
    if wave.dim() != 3 or wave.shape[1] != 1:
        raise ValueError(f"{who} expects waves (B, 1, T) or (B, T), got {tuple(wave.shape)}")
    return wave


def mpd_widths(channels: int, max_channels: int = 1024) -> list[int]:
    """The five conv widths of a period discriminator: HiFi-GAN's 32, 128, 512, 1024, 1024 for ``channels``
    32, i.e. ``c, 4c, 16c, 32c, 32c``, each at most ``max_channels``."""
    return [min(channels * k, max_channels) for k in (1, 4, 16, 32, 32)]


class PeriodDiscriminator(nn.Module):
    """One period p of HiFi-GAN's MPD: the wave (B, 1, T), reflect-padded at the end to a multiple of p, is
    folded into p columns, each holding every p-th sample; convs with kernel 5 along the columns (four of
    stride 3, one of stride 1), then a kernel-3 conv to one logit per position. Weight norm.

    HiFi-GAN writes these as 2-D convs with kernel (5, 1) over a (T / p, p) image; a (k, 1) kernel never
    mixes columns, so here the columns are batched through 1-D convs: the same function, and a CPU runs
    small 1-D convs faster. Logits are (B, p, T'), features (B, p * channels, T') (the
    columns' channels side by side).
    """

    def __init__(self, period: int, widths: Sequence[int]) -> None:
        super().__init__()
        self.period = period
        layers, ch = [], 1
        for i, out_ch in enumerate(widths):
            stride = 3 if i < len(widths) - 1 else 1
            layers.append(weight_norm(nn.Conv1d(ch, out_ch, 5, stride, padding=2)))
            ch = out_ch
        self.layers = nn.ModuleList(layers)
        self.to_logits = weight_norm(nn.Conv1d(ch, 1, 3, padding=1))

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch, length = wave.shape[0], wave.shape[-1]
        if length % self.period:
            wave = F.pad(wave, (0, self.period - length % self.period), mode="reflect")
        # (B, 1, T) -> (B, T / p, p) -> (B, p, T / p) -> (B * p, 1, T / p): column j holds samples j, j + p, ...
        x = wave.reshape(batch, -1, self.period).transpose(1, 2).reshape(batch * self.period, 1, -1)
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), LEAKY_SLOPE)
            features.append(x.reshape(batch, -1, x.shape[-1]))
        return self.to_logits(x).reshape(batch, self.period, -1), features


class MultiPeriodDiscriminator(nn.Module):
    """HiFi-GAN's multi-period discriminator: one :class:`PeriodDiscriminator` per period (2, 3, 5, 7, 11)."""

    def __init__(self, channels: int = 32, max_channels: int = 1024, periods: Sequence[int] = PERIODS) -> None:
        super().__init__()
        if channels < 1 or max_channels < 1 or not periods or min(periods) < 1:
            raise ValueError(f"MultiPeriodDiscriminator needs positive channels and periods, got channels={channels}, "
                             f"max_channels={max_channels}, periods={tuple(periods)}")
        widths = mpd_widths(channels, max_channels)
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, widths) for p in periods)

    def forward(self, wave: torch.Tensor) -> DiscriminatorOutput:
        wave = _as_batch(wave, "MultiPeriodDiscriminator")
        outputs = [d(wave) for d in self.discriminators]
        return DiscriminatorOutput(logits=[o[0] for o in outputs], features=[o[1] for o in outputs])


class ResolutionDiscriminator(nn.Module):
    """One resolution of the multi-resolution STFT discriminator: the linear magnitude of the STFT (n_fft, hop,
    window; reflect padding n_fft / 2, periodic Hann), laid out as an image (B, 1, frames, bins); a conv
    (3, 9), three convs (3, 9) of stride 2 along frequency, a conv (3, 3), all ``channels`` wide, then a conv
    (3, 3) to one logit per (frame, band). Weight norm."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int, channels: int = 32) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.pad = ReflectionPad1d(n_fft // 2)  # any length, as a centred STFT would pad, short clips too
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        shapes = [((3, 9), (1, 1), (1, 4))] + [((3, 9), (1, 2), (1, 4))] * 3 + [((3, 3), (1, 1), (1, 1))]
        layers, ch = [], 1
        for kernel, stride, padding in shapes:
            layers.append(weight_norm(nn.Conv2d(ch, channels, kernel, stride, padding)))
            ch = channels
        self.layers = nn.ModuleList(layers)
        self.to_logits = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def magnitude(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) -> (B, 1, frames, n_fft // 2 + 1), in float32."""
        with torch.autocast(wave.device.type, enabled=False):
            spec = torch.stft(self.pad(wave.float()).squeeze(1), self.n_fft, self.hop_length, self.win_length,
                              self.window.float(), center=False, return_complex=True)
            # the floor keeps sqrt's gradient finite on exact silence
            return (spec.real.square() + spec.imag.square()).clamp_min(1e-9).sqrt().transpose(1, 2).unsqueeze(1)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.magnitude(wave)
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), LEAKY_SLOPE)
            features.append(x)
        return self.to_logits(x), features


class MultiResolutionDiscriminator(nn.Module):
    """One :class:`ResolutionDiscriminator` per STFT resolution; the defaults are the three of the
    multi-resolution STFT loss (``losses.STFT_RESOLUTIONS``: FFT 1024/2048/512, hop 120/240/50, window
    600/1200/240), which UnivNet's discriminator uses too."""

    def __init__(self, channels: int = 32,
                 resolutions: Sequence[tuple[int, int, int]] = STFT_RESOLUTIONS) -> None:
        super().__init__()
        if channels < 1 or not resolutions:
            raise ValueError(f"MultiResolutionDiscriminator needs positive channels and a resolution, got "
                             f"channels={channels}, resolutions={tuple(resolutions)}")
        self.discriminators = nn.ModuleList(ResolutionDiscriminator(*r, channels=channels) for r in resolutions)

    def forward(self, wave: torch.Tensor) -> DiscriminatorOutput:
        wave = _as_batch(wave, "MultiResolutionDiscriminator")
        outputs = [d(wave) for d in self.discriminators]
        return DiscriminatorOutput(logits=[o[0] for o in outputs], features=[o[1] for o in outputs])


class CombinedDiscriminator(nn.Module):
    """Several discriminators as one: their logits and features side by side, in the order given."""

    def __init__(self, discriminators: dict[str, nn.Module]) -> None:
        super().__init__()
        self.discriminators = nn.ModuleDict(discriminators)

    def forward(self, wave: torch.Tensor) -> DiscriminatorOutput:
        logits, features = [], []
        for discriminator in self.discriminators.values():
            out = discriminator(wave)
            logits += out.logits
            features += out.features
        return DiscriminatorOutput(logits=logits, features=features)


def build_discriminators(names: str, ndf: int = 16, max_channels: int = 1024, mpd_channels: int = 32,
                         mrd_channels: int = 32) -> nn.Module:
    """The discriminator ``names`` asks for: one of ``msd``, ``mpd``, ``mrd``, or several joined by "+"
    (``mpd+mrd``, Vocos's pair). ``ndf`` sizes the MSD; ``max_channels`` caps MSD and MPD layers."""
    parts = names.split("+")
    unknown = [p for p in parts if p not in DISCRIMINATORS]
    if unknown or len(set(parts)) != len(parts):
        raise ValueError(f"discriminator must be names from {', '.join(DISCRIMINATORS)} joined by '+' "
                         f"(each once), got {names!r}")
    made = {
        "msd": lambda: MultiScaleDiscriminator(ndf=ndf, max_channels=max_channels),
        "mpd": lambda: MultiPeriodDiscriminator(mpd_channels, max_channels),
        "mrd": lambda: MultiResolutionDiscriminator(mrd_channels),
    }
    if len(parts) == 1:
        return made[parts[0]]()
    return CombinedDiscriminator({name: made[name]() for name in parts})
