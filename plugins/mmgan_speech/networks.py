"""MelGAN (Kumar et al. 2019) split around mmgan's shared trunk: log-mel stem, upsampling head, multi-scale D.

The paper's generator is log-mel (80, F) -> reflection pad 3 + conv k7 to 512 channels -> four transposed
convolutions (x8, x8, x2, x2 = the hop of 256), each followed by a residual stack with dilations 1, 3, 9 ->
conv k7 to one channel -> tanh. Here its first layer is the stem (emitting F tokens of the trunk's width),
the trunk sits between, and everything after the first layer is the head; at width 512 and ngf 32 the
stem + head are the paper's generator layer for layer. Every convolution is weight-normalised, LeakyReLU
has slope 0.2, and weights start from PyTorch's default initialisation, which is what the reference
implementation effectively trains with (its N(0, 0.02) draw lands on ``.weight`` after weight norm and is
overwritten by the next forward). Drawing N(0, 0.02) for real shrinks the signal through ~15 layers to
~1e-5: the generator starts silent, below the log-mel clamp, where the mel loss has no gradient.

The discriminator is MelGAN's multi-scale one: three identical convolutional discriminators on the raw
wave and its x2 and x4 average-pooled versions, with grouped strided convolutions; it returns its feature
maps too, for the feature-matching loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

__all__ = [
    "DiscriminatorOutput",
    "MelGANHead",
    "MelStem",
    "MultiScaleDiscriminator",
    "ReflectionPad1d",
    "ResidualBlock",
    "ScaleDiscriminator",
    "feature_matching_loss",
    "remove_weight_norm",
]

LEAKY_SLOPE = 0.2  # every LeakyReLU of MelGAN, in G and D


def _wn(conv: nn.Conv1d | nn.ConvTranspose1d) -> nn.Module:
    """Weight-normalise a convolution that keeps PyTorch's default initialisation (see the module doc)."""
    return weight_norm(conv)


def remove_weight_norm(module: nn.Module) -> nn.Module:
    """Fold every weight-norm parametrisation of ``module`` into a plain ``weight``, in place; returns it.

    For inference and export: the outputs are unchanged and a forward no longer recomputes ``g * v / ||v||``.
    The state dict's keys change from ``...parametrizations.weight.original0/1`` to ``...weight``.
    """
    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return module


class ReflectionPad1d(nn.Module):
    """Reflection padding on the last axis that also works on sequences no longer than the padding.

    Where ``padding < T`` it is exactly ``F.pad(x, (p, p), mode="reflect")`` (MelGAN's ``nn.ReflectionPad1d``);
    shorter inputs keep reflecting back and forth (a single sample is repeated), so the networks accept any
    number of mel frames, down to one.
    """

    def __init__(self, padding: int) -> None:
        super().__init__()
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, t = self.padding, x.shape[-1]
        if p < t:
            return F.pad(x, (p, p), mode="reflect")
        index = torch.arange(-p, t + p, device=x.device)
        if t == 1:
            index = torch.zeros_like(index)
        else:
            period = 2 * (t - 1)
            index = index.remainder(period)
            index = torch.where(index < t, index, period - index)
        return x.index_select(-1, index)

    def extra_repr(self) -> str:
        return f"padding={self.padding}"


class MelStem(nn.Module):
    """Log-mel (B, n_mels, F) -> tokens (B, width, F): MelGAN's first layer, reflection pad + conv k7."""

    def __init__(self, n_mels: int = 80, width: int = 512, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"MelStem kernel_size must be odd to keep the frame count, got {kernel_size}")
        self.n_mels = n_mels
        self.net = nn.Sequential(
            ReflectionPad1d(kernel_size // 2),
            _wn(nn.Conv1d(n_mels, width, kernel_size)),
        )

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise ValueError(f"MelStem expects a log-mel (B, {self.n_mels}, frames), got {tuple(mel.shape)}")
        return self.net(mel)


class ResidualBlock(nn.Module):
    """MelGAN's residual block: x -> shortcut(x) + [LReLU, pad d, conv k3 dilation d, LReLU, conv k1](x)."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.LeakyReLU(LEAKY_SLOPE),
            ReflectionPad1d(dilation),
            _wn(nn.Conv1d(channels, channels, 3, dilation=dilation)),
            nn.LeakyReLU(LEAKY_SLOPE),
            _wn(nn.Conv1d(channels, channels, 1)),
        )
        # a learned 1x1 shortcut rather than the identity, as in MelGAN's code
        self.shortcut = _wn(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class MelGANHead(nn.Module):
    """Tokens (B, width, F) -> waveform (B, 1, F * prod(ratios)) in [-1, 1]: MelGAN after its first layer.

    Per ratio r: LeakyReLU, transposed conv (kernel 2r, stride r) that multiplies the length by exactly r,
    then a residual stack (one :class:`ResidualBlock` per dilation). The channels after upsampling i are
    ``ngf * 2 ** (len(ratios) - 1 - i)`` (256, 128, 64, 32 at the defaults), so the first transposed conv maps
    the trunk's ``width`` to ``ngf * 2 ** (len(ratios) - 1)``: at width 512 = 32 * 2**4 the channels simply
    halve as in the paper, while another trunk width keeps the same head. Fully convolutional: any F >= 1.
    """

    def __init__(self, width: int = 512, ratios: Sequence[int] = (8, 8, 2, 2), dilations: Sequence[int] = (1, 3, 9),
                 ngf: int = 32) -> None:
        super().__init__()
        if not ratios or any(r < 1 for r in ratios) or any(d < 1 for d in dilations) or ngf < 1 or width < 1:
            raise ValueError(f"MelGANHead needs positive width, ngf, ratios and dilations, got width={width}, "
                             f"ngf={ngf}, ratios={tuple(ratios)}, dilations={tuple(dilations)}")
        self.hop_length = math.prod(ratios)
        layers: list[nn.Module] = []
        in_ch = width
        for i, r in enumerate(ratios):
            out_ch = ngf * 2 ** (len(ratios) - 1 - i)
            layers += [
                nn.LeakyReLU(LEAKY_SLOPE),
                # (L - 1) r - 2 (r//2 + r%2) + 2r + r%2 == L r for every r, odd or even
                _wn(nn.ConvTranspose1d(in_ch, out_ch, 2 * r, stride=r, padding=r // 2 + r % 2,
                                       output_padding=r % 2)),
                *(ResidualBlock(out_ch, d) for d in dilations),
            ]
            in_ch = out_ch
        layers += [
            nn.LeakyReLU(LEAKY_SLOPE),
            ReflectionPad1d(3),
            _wn(nn.Conv1d(in_ch, 1, 7)),
            nn.Tanh(),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens)


@dataclass
class DiscriminatorOutput:
    """What :class:`MultiScaleDiscriminator` returns.

    ``logits``: one (B, 1, T') tensor per scale (what mmgan's adversarial losses read, averaged over scales).
    ``features``: per scale, the activation after each LeakyReLU (what :func:`feature_matching_loss` reads).
    """

    logits: list[torch.Tensor]
    features: list[list[torch.Tensor]]


class ScaleDiscriminator(nn.Module):
    """One scale of MelGAN's discriminator: wave (B, 1, T) -> logits (B, 1, ceil(T / 256)) and 6 feature maps.

    Defaults are the paper's: conv k15 to 16 channels, four grouped convs k41 stride 4 (16 -> 64 -> 256 ->
    1024 -> 1024, groups = in_channels / 4), conv k5, then conv k3 to one logit per position.
    """

    def __init__(self, ndf: int = 16, max_channels: int = 1024, downsamplings: int = 4) -> None:
        super().__init__()
        stride = 4
        layers = [nn.Sequential(ReflectionPad1d(7), _wn(nn.Conv1d(1, ndf, 15)))]
        ch = ndf
        for _ in range(downsamplings):
            out_ch, groups = min(ch * stride, max_channels), max(ch // 4, 1)
            if ch % groups or out_ch % groups:
                raise ValueError(f"ScaleDiscriminator channels {ch} -> {out_ch} do not divide into {groups} groups; "
                                 "use powers of two for ndf and max_channels")
            layers.append(_wn(nn.Conv1d(ch, out_ch, stride * 10 + 1, stride=stride, padding=stride * 5,
                                        groups=groups)))
            ch = out_ch
        out_ch = min(ch * 2, max_channels)
        layers.append(_wn(nn.Conv1d(ch, out_ch, 5, padding=2)))
        self.layers = nn.ModuleList(layers)
        self.activation = nn.LeakyReLU(LEAKY_SLOPE)
        self.to_logits = _wn(nn.Conv1d(out_ch, 1, 3, padding=1))

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        x = wave
        for layer in self.layers:
            x = self.activation(layer(x))
            features.append(x)
        return self.to_logits(x), features


class MultiScaleDiscriminator(nn.Module):
    """MelGAN's multi-scale discriminator on waves (B, 1, T) (or (B, T)).

    Scale k sees the wave average-pooled k times (kernel 4, stride 2, padding 1, padding not counted), so
    its length is ``T // 2**k``. Returns a :class:`DiscriminatorOutput`.
    """

    def __init__(self, scales: int = 3, ndf: int = 16, max_channels: int = 1024) -> None:
        super().__init__()
        if scales < 1:
            raise ValueError(f"MultiScaleDiscriminator needs at least one scale, got {scales}")
        self.discriminators = nn.ModuleList(ScaleDiscriminator(ndf, max_channels) for _ in range(scales))
        self.pool = nn.AvgPool1d(4, stride=2, padding=1, count_include_pad=False)

    def forward(self, wave: torch.Tensor) -> DiscriminatorOutput:
        if wave.dim() == 2:
            wave = wave.unsqueeze(1)
        if wave.dim() != 3 or wave.shape[1] != 1:
            raise ValueError(f"MultiScaleDiscriminator expects waves (B, 1, T) or (B, T), got {tuple(wave.shape)}")
        logits, features = [], []
        for k, discriminator in enumerate(self.discriminators):
            if k:
                wave = self.pool(wave)
            scale_logits, scale_features = discriminator(wave)
            logits.append(scale_logits)
            features.append(scale_features)
        return DiscriminatorOutput(logits=logits, features=features)


def feature_matching_loss(real: DiscriminatorOutput, fake: DiscriminatorOutput) -> torch.Tensor:
    """MelGAN's feature-matching loss: L1 between D's feature maps on fake and (detached) real waves.

    Normalisation: each layer's L1 is a mean over its elements, and the result is the plain mean over all
    (scale, layer) pairs (18 at the defaults), so the value does not grow with the number of scales or layers.
    MelGAN's code instead sums the layers with weight ``4 / (n_layers + 1) / scales`` = 0.8 / 3 each, which
    for its 6 feature layers is 1.6 x this mean: its lambda 10 corresponds to a weight of 16 here.
    """
    terms = [
        F.l1_loss(f, r.detach())
        for real_scale, fake_scale in zip(real.features, fake.features, strict=True)
        for r, f in zip(real_scale, fake_scale, strict=True)
    ]
    return torch.stack(terms).mean()
