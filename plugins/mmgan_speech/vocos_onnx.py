"""The vocos head in real arithmetic, for ONNX: what :class:`~mmgan_speech.vocos.ISTFTHead` computes, with
every complex FFT replaced by a convolution with a DFT basis.

ONNX has no complex tensors, and torch's exporter converts neither ``torch.fft.irfft`` nor ``torch.stft``
with ``return_complex`` (nor ``torch.polar`` and ``torch.sgn`` of complex numbers). Here a spectrum is two
real tensors, its real and imaginary parts, and:

- the analysis (``frame_spectrum``: reflect padding, periodic Hann window, one-sided DFT of each hop-spaced
  frame) is one ``conv1d`` of stride ``hop`` whose ``2 * bins`` output channels hold the windowed cosines
  and (negated) sines of every bin;
- the synthesis (``InverseSTFT``: inverse real DFT of each frame, window, overlap-add, division by the
  squared-window envelope, crop) is one ``conv_transpose1d`` of stride ``hop`` whose kernel holds each bin's
  windowed inverse-DFT basis (weight 1 for DC and Nyquist, 2 for the others, over n_fft), then the same
  envelope and crop;
- ``z / |z|`` (the phase projections' ``sgn``) divides both parts by the modulus, 0 where it is 0.

The bases are computed in float64 and stored in float32. A DFT by matrix rounds differently from an FFT;
with the phase projections (16 by default, with momentum) the difference to the PyTorch head grows with the
iterations: measured in docs/deploy.md, and checked by ``mmgan export`` on every file it writes.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from mmgan.evaluation import ModalityGenerator
from mmgan_speech.mel import MelConfig
from mmgan_speech.vocos import MAX_LOG_MAGNITUDE, PHASE_MOMENTUM, ISTFTHead, _mel_pseudo_inverse, _padded_window

__all__ = ["RealISTFTHead", "RealSTFT", "onnx_vocos"]


def _bases(config: MelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(analysis, synthesis), each (2 * bins, 1, n_fft) float32: the windowed forward DFT's cosines and
    negated sines, and the windowed inverse real DFT's weighted cosines and negated sines."""
    n_fft = config.n_fft
    bins = n_fft // 2 + 1
    window = _padded_window(config).double()
    k = torch.arange(bins, dtype=torch.float64)[:, None]
    n = torch.arange(n_fft, dtype=torch.float64)[None, :]
    angle = 2 * math.pi * ((k * n) % n_fft) / n_fft  # reduced first: exact angles for every k * n
    cos, sin = torch.cos(angle), torch.sin(angle)
    analysis = torch.cat([cos * window, -sin * window])
    weight = torch.full((bins, 1), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if n_fft % 2 == 0:
        weight[-1] = 1.0  # the Nyquist bin appears once in a real spectrum of even length
    synthesis = torch.cat([weight * cos, -weight * sin]) * window / n_fft
    return analysis.float().unsqueeze(1), synthesis.float().unsqueeze(1)


class RealSTFT(nn.Module):
    """Waves (B, F * hop) <-> spectra as (real, imaginary) pairs (B, bins, F), with the plugin's framing:
    :func:`~mmgan_speech.vocos.frame_spectrum` and :class:`~mmgan_speech.vocos.InverseSTFT` without complex
    numbers."""

    def __init__(self, config: MelConfig) -> None:
        super().__init__()
        self.bins, self.hop, self.padding = config.n_fft // 2 + 1, config.hop_length, config.padding
        analysis, synthesis = _bases(config)
        self.register_buffer("analysis", analysis, persistent=False)
        self.register_buffer("synthesis", synthesis, persistent=False)
        self.register_buffer("window_square", _padded_window(config).square()[None, None, :], persistent=False)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        padded = F.pad(wave.unsqueeze(1), (self.padding, self.padding), mode="reflect")
        spectrum = F.conv1d(padded, self.analysis, stride=self.hop)
        return spectrum[:, : self.bins], spectrum[:, self.bins:]

    def inverse(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        wave = F.conv_transpose1d(torch.cat([real, imag], dim=1), self.synthesis, stride=self.hop)[:, 0]
        ones = torch.ones_like(real[:1, :1])  # (1, 1, F): the envelope for this many frames
        envelope = F.conv_transpose1d(ones, self.window_square, stride=self.hop)[0, 0]
        keep = wave.shape[-1] - self.padding
        return wave[:, self.padding: keep] / envelope[self.padding: keep].clamp_min(1e-11)


def _unit(real: torch.Tensor, imag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``z / |z|`` as (real, imaginary), 0 where ``z`` is 0 (``torch.sgn``)."""
    modulus = torch.sqrt(real.square() + imag.square())
    safe = torch.where(modulus > 0, modulus, torch.ones_like(modulus))
    return real / safe, imag / safe


class RealISTFTHead(nn.Module):
    """An :class:`ISTFTHead` (its layers, shared, not copied) computing in real arithmetic, in evaluation mode:
    the head's ``phase_iterations`` projections, never the training count."""

    def __init__(self, head: ISTFTHead) -> None:
        super().__init__()
        self.head = head
        self.takes_input = head.takes_input
        self.stft = RealSTFT(head.config)
        if head.magnitude_prior:
            self.register_buffer("inverse_mel", _mel_pseudo_inverse(head.config, torch.device("cpu")).clone(),
                                 persistent=False)
        # each bin's phase advance at each frame of one period (the term repeats every period frames)
        frames = torch.arange(head.period, dtype=torch.float32)
        self.register_buffer("centre", torch.remainder(head.advance * frames, 2 * math.pi), persistent=False)

    def forward(self, tokens: torch.Tensor, mel: torch.Tensor | None = None) -> torch.Tensor:
        head = self.head
        x = head.to_spectrum(head.norm(tokens.transpose(1, 2))).transpose(1, 2).float()
        log_magnitude, phase = x[:, : head.bins], x[:, head.bins:]
        if head.magnitude_prior:
            if mel is None:
                raise ValueError("RealISTFTHead(magnitude_prior=True) needs the mel: head(tokens, mel)")
            linear = torch.einsum("km,bmf->bkf", self.inverse_mel, mel.float().exp())
            log_magnitude = log_magnitude + linear.clamp_min(head.config.log_clamp).log()
        if head.phase_advance:
            frames = phase.shape[-1]
            repeats = (frames + head.period - 1) // head.period
            phase = phase + self.centre.repeat(1, repeats)[:, :frames]
        magnitude = log_magnitude.clamp(max=MAX_LOG_MAGNITUDE).exp()
        real, imag = torch.cos(phase), torch.sin(phase)  # polar(1, phase)
        if head.phase_iterations:  # project_phase
            previous_real, previous_imag = torch.zeros_like(real), torch.zeros_like(imag)
            keep = PHASE_MOMENTUM / (1 + PHASE_MOMENTUM)
            for _ in range(head.phase_iterations):
                rebuilt_real, rebuilt_imag = self.stft(self.stft.inverse(magnitude * real, magnitude * imag))
                real, imag = _unit(rebuilt_real - keep * previous_real, rebuilt_imag - keep * previous_imag)
                previous_real, previous_imag = rebuilt_real, rebuilt_imag
        return self.stft.inverse(magnitude * real, magnitude * imag).unsqueeze(1)


def onnx_vocos(generator: nn.Module, modality: str) -> nn.Module:
    """``mel -> wave`` of a generator set whose ``modality`` head is an :class:`ISTFTHead`, with that head in
    real arithmetic (a shallow copy of the set: its layers are shared with ``generator``)."""
    head = generator.heads[modality]
    if not isinstance(head, ISTFTHead):
        raise TypeError(f"onnx_vocos needs an ISTFTHead, got {type(head).__name__}")
    real = copy.copy(generator)  # the set's own module dicts are replaced, not its layers
    real._modules = dict(generator._modules)
    real.heads = nn.ModuleDict({**generator.heads, modality: RealISTFTHead(head)})
    return ModalityGenerator(real, modality).eval()
