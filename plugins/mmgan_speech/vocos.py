"""Vocos (Siuzdak 2023, arXiv 2306.00814) split around mmgan's shared trunk: the whole generator runs at the
frame rate, and an inverse STFT makes the waveform.

The paper's generator is log-mel -> conv k7 embedding + LayerNorm -> ConvNeXt blocks (depthwise conv over
time, MLP, layer scale) -> LayerNorm -> a linear layer predicting, per frame, the log-magnitude and the phase
of every STFT bin -> inverse STFT. Here the embedding is the stem, the ConvNeXt blocks are the shared trunk
(whose blocks are already of that kind: LayerNorm, depthwise conv over T, MLP, a gated residual as layer
scale), and the rest is the head. Written from the paper's description.

The inverse STFT is the exact inverse of the plugin's own framing (``mel.py``: reflect pad (n_fft - hop) / 2
on both sides, ``center=False``, periodic Hann), so F frames make exactly F * hop samples, as MelGAN's head
does. ``torch.istft`` cannot be used for it: with ``center=False`` its NOLA check looks at the first sample,
where the periodic Hann window is 0, and refuses. The overlap-add here divides by the squared-window envelope
that the frames really have and crops the padding; the envelope is nonzero on everything kept.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from mmgan_speech.mel import MelConfig, mel_filterbank
from mmgan_speech.networks import ReflectionPad1d

__all__ = ["ISTFTHead", "InverseSTFT", "VocosStem", "frame_spectrum", "phase_period", "project_phase"]

MEL = MelConfig()
# the largest STFT magnitude the head predicts: Vocos clips the magnitude at 1e2 (a full-scale sine at
# n_fft 1024 under a Hann window peaks near 256)
MAX_LOG_MAGNITUDE = math.log(1e2)


def _padded_window(config: MelConfig) -> torch.Tensor:
    """The analysis window of ``config`` on n_fft points: periodic Hann of win_length, centred (as
    ``torch.stft`` pads a shorter window). Made with torch ops, so it builds on the meta device."""
    left = (config.n_fft - config.win_length) // 2
    return F.pad(torch.hann_window(config.win_length), (left, config.n_fft - config.win_length - left))


def frame_spectrum(wave: torch.Tensor, config: MelConfig = MEL) -> torch.Tensor:
    """The complex STFT (B, n_fft // 2 + 1, T // hop) of waves (B, T) with the plugin's own framing (the one
    ``mel_spectrogram`` takes its magnitude from): what :class:`InverseSTFT` inverts."""
    padded = F.pad(wave.unsqueeze(1), (config.padding, config.padding), mode="reflect").squeeze(1)
    return torch.stft(padded, config.n_fft, config.hop_length, config.win_length,
                      torch.hann_window(config.win_length, device=wave.device, dtype=wave.dtype),
                      center=False, onesided=True, return_complex=True)


class InverseSTFT(nn.Module):
    """Complex spectra (B, n_fft // 2 + 1, F) -> waves (B, F * hop): the inverse of :func:`frame_spectrum`.

    Each frame's inverse FFT is windowed again, the frames are overlap-added (``F.fold``), the sum is divided
    by the overlap-added squared window, and the ``(n_fft - hop) / 2`` padding is cut from both ends. For the
    spectrum of a real wave this returns the wave (to float precision); for any spectrum it is the
    least-squares wave whose frames are nearest (Griffin & Lim 1984).
    """

    def __init__(self, config: MelConfig = MEL) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.padding = config.n_fft, config.hop_length, config.padding
        # not in the state dict: exports never carry (and can never disagree with) the mel definition
        self.register_buffer("window", _padded_window(config), persistent=False)

    def forward(self, spectrum: torch.Tensor) -> torch.Tensor:
        if spectrum.dim() != 3 or spectrum.shape[1] != self.n_fft // 2 + 1:
            raise ValueError(f"InverseSTFT expects spectra (B, {self.n_fft // 2 + 1}, frames), "
                             f"got {tuple(spectrum.shape)}")
        frames = spectrum.shape[-1]
        window = self.window.to(spectrum.real.dtype)
        pieces = torch.fft.irfft(spectrum, n=self.n_fft, dim=1) * window[:, None]
        length = (frames - 1) * self.hop_length + self.n_fft
        wave = self.overlap_add(pieces)
        envelope = self.overlap_add(window.square()[None, :, None].expand(1, -1, frames))[0]
        keep = slice(self.padding, length - self.padding)
        # the floor only guards other window settings; with the plugin's framing the kept envelope is >= 0.75
        return wave[:, keep] / envelope[keep].clamp_min(1e-11)

    def overlap_add(self, pieces: torch.Tensor) -> torch.Tensor:
        """Frames (B, n_fft, F) laid ``hop`` apart and summed: (B, (F - 1) * hop + n_fft). Where n_fft is a
        whole number of hops (the plugin's 1024 / 256) as that many shifted sums of hop-long blocks, which
        is faster on a CPU than ``F.fold`` (the general case) and gives the same numbers."""
        batch, n_fft, frames = pieces.shape
        length = (frames - 1) * self.hop_length + n_fft
        if n_fft % self.hop_length:
            fold = {"output_size": (1, length), "kernel_size": (1, n_fft), "stride": (1, self.hop_length)}
            return F.fold(pieces, **fold).reshape(batch, length)
        blocks = n_fft // self.hop_length
        split = pieces.reshape(batch, blocks, self.hop_length, frames)
        summed = F.pad(split[:, 0], (0, blocks - 1))
        for j in range(1, blocks):  # block j of frame f lands in hop slot f + j
            summed = summed + F.pad(split[:, j], (j, blocks - 1 - j))
        return summed.transpose(1, 2).reshape(batch, length)


# fast Griffin-Lim's momentum (Perraudin et al. 2013; librosa's default)
PHASE_MOMENTUM = 0.99


def projection_reach(config: MelConfig = MEL) -> int:
    """Frames on each side that one :func:`project_phase` iteration mixes: frame f's STFT reads the inverse
    STFT's samples ``[f * hop - pad, f * hop - pad + n_fft)``, which frames up to ``(n_fft - 1) // hop``
    away wrote (3 at the plugin's 1024 / 256)."""
    return (config.n_fft - 1) // config.hop_length


def project_phase(magnitude: torch.Tensor, phase: torch.Tensor, iterations: int, istft: InverseSTFT,
                  config: MelConfig = MEL, momentum: float = PHASE_MOMENTUM) -> torch.Tensor:
    """The spectrum ``magnitude * e^(i phase')`` (B, bins, F) after ``iterations`` of fast Griffin-Lim
    (Perraudin et al. 2013) from ``phase``: each keeps the phase of the STFT of the inverse STFT of the
    current spectrum (the nearest consistent spectrum's), with momentum. Differentiable, and local in
    time: each iteration mixes :func:`projection_reach` frames on each side. A learned vocoder trained
    through it (as Deep Griffin-Lim, Masuyama et al. 2019, trains a network between such projections)
    learns a magnitude whose phase the projections can find, from a start better than random."""
    angles = torch.polar(torch.ones_like(magnitude), phase)
    previous = torch.zeros_like(angles)
    for _ in range(iterations):
        rebuilt = frame_spectrum(istft(magnitude * angles), config)
        angles = torch.sgn(rebuilt - (momentum / (1 + momentum)) * previous)  # z / |z|; 0 (grad 0) at 0
        previous = rebuilt
    return magnitude * angles


class VocosStem(nn.Module):
    """Log-mel (B, n_mels, F) -> tokens (B, width, F): Vocos's embedding, a conv k7 and a LayerNorm over
    the channels. The padding reflects (as MelGAN's stem), so edge frames see speech, not a log-mel of 0."""

    def __init__(self, n_mels: int = 80, width: int = 512, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"VocosStem kernel_size must be odd to keep the frame count, got {kernel_size}")
        self.n_mels = n_mels
        self.pad = ReflectionPad1d(kernel_size // 2)
        self.conv = nn.Conv1d(n_mels, width, kernel_size)
        self.norm = nn.LayerNorm(width)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise ValueError(f"VocosStem expects a log-mel (B, {self.n_mels}, frames), got {tuple(mel.shape)}")
        return self.norm(self.conv(self.pad(mel)).transpose(1, 2)).transpose(1, 2)


def phase_period(config: MelConfig = MEL) -> int:
    """Frames after which every bin's centre-frequency phase advance comes round to a whole turn:
    ``n_fft / gcd(n_fft, hop)`` (4 at the plugin's 1024 / 256)."""
    return config.n_fft // math.gcd(config.n_fft, config.hop_length)


@functools.cache
def _mel_pseudo_inverse(config: MelConfig, device: torch.device) -> torch.Tensor:
    """(bins, n_mels) float32: the Moore-Penrose pseudo-inverse of the mel filterbank, computed in float64."""
    return torch.linalg.pinv(mel_filterbank(config).double()).float().to(device)


class ISTFTHead(nn.Module):
    """Tokens (B, width, F) -> waveform (B, 1, F * hop): LayerNorm, Linear(width -> n_fft + 2), read as the
    log-magnitude and the phase of the n_fft / 2 + 1 bins of each frame, then :class:`InverseSTFT`.

    The magnitude is ``exp`` of the log-magnitude clipped at ``MAX_LOG_MAGNITUDE``; the phase is used as an
    angle (any real number). The wave is not squashed (no tanh): WAV writing clips at full scale.
    The spectral part runs in float32 whatever the autocast: FFTs have no bf16 kernel on the CPU.

    ``magnitude_prior``: the predicted log-magnitude is added to :meth:`prior`, the least-squares
    magnitude of the input mel (the head then takes ``(tokens, mel)``: ``takes_input``), and starts at
    zero: the network learns what the mel cannot say (FreeV, Lv et al. 2024, feeds a vocoder the same
    pseudo-inverse). Alone, the prior's mel is within 0.013 of the input's (log-mel L1, flite speech).

    ``phase_advance``: the predicted phase of bin k at frame t is added to ``t * 2 pi k hop / n_fft``, the
    phase a steady partial at the bin's centre frequency has moved by then. Without it, the network must
    make each frame's phase move on from the last frame's by that much, which a stack of convolutions
    (the same weights at every frame, no clock) cannot do over a steady sound: its phase steps are no
    better than random ones (docs/benchmarks.md). The phase half of the linear layer then starts at zero,
    so training starts from the advance itself. The added term repeats every :func:`phase_period`
    frames, so a chunk that starts on a multiple of it gets the same phases as the whole mel
    (``vocode`` aligns its chunks so).

    ``phase_iterations``: in evaluation and vocoding the spectrum goes through that many fast Griffin-Lim
    projections (:func:`project_phase`) from the predicted phase before the inverse STFT, so the wave's own
    STFT is nearer the predicted magnitude (a frame-wise network's phase is not consistent across
    overlapping frames; docs/benchmarks.md). Each widens the receptive field by :func:`projection_reach`
    frames on each side. ``train_phase_iterations`` (-1: as many) is the count in training, trained
    through, from step ``phase_iterations_start`` on; before it the head trains without them (a network
    trained through them from its first step learnt less of the fine structure than one that learnt it
    first; docs/benchmarks.md). A head that was trained through some projections scores better with more
    of them in vocoding, not fewer.
    """

    def __init__(self, width: int = 512, config: MelConfig = MEL, phase_advance: bool = False,
                 magnitude_prior: bool = False, phase_iterations: int = 0, train_phase_iterations: int = -1,
                 phase_iterations_start: int = 0) -> None:
        super().__init__()
        if phase_iterations < 0 or train_phase_iterations < -1 or phase_iterations_start < 0:
            raise ValueError("phase_iterations >= 0, train_phase_iterations >= -1 and phase_iterations_start "
                             f">= 0, got {phase_iterations}, {train_phase_iterations}, {phase_iterations_start}")
        self.config = config
        self.phase_iterations = phase_iterations
        self.train_phase_iterations = phase_iterations if train_phase_iterations < 0 else train_phase_iterations
        self.phase_iterations_start = phase_iterations_start
        # the count in a training step's forward; None (evaluation, vocoding): phase_iterations
        self.iterations_now: int | None = None
        self.magnitude_prior = magnitude_prior
        self.takes_input = magnitude_prior  # GeneratorSet then calls head(tokens, mel)
        self.bins = config.n_fft // 2 + 1
        self.hop_length = config.hop_length
        self.norm = nn.LayerNorm(width)
        self.to_spectrum = nn.Linear(width, 2 * self.bins)
        self.istft = InverseSTFT(config)
        self.phase_advance = phase_advance
        self.period = phase_period(config) if phase_advance else 1
        if phase_advance:  # start from the advance itself: random initial phases would scramble it
            with torch.no_grad():
                self.to_spectrum.weight[self.bins:].zero_()
                self.to_spectrum.bias[self.bins:].zero_()
        # the advance per frame of each bin, in whole turns mod 1 (exact in float64, then small angles)
        turns = (torch.arange(self.bins, dtype=torch.float64) * config.hop_length / config.n_fft) % 1.0
        self.register_buffer("advance", (2 * math.pi * turns).float()[:, None], persistent=False)
        if magnitude_prior:  # start from the prior itself
            with torch.no_grad():
                self.to_spectrum.weight[: self.bins].zero_()
                self.to_spectrum.bias[: self.bins].zero_()

    def at_training_step(self, step: int) -> None:
        """A training step projects ``train_phase_iterations`` times from ``phase_iterations_start`` on, none
        before (GeneratorSet calls this before each training step's forward; evaluation and vocoding run on
        copies that never hear it, with ``phase_iterations``)."""
        self.iterations_now = self.train_phase_iterations if step >= self.phase_iterations_start else 0

    def prior(self, mel: torch.Tensor) -> torch.Tensor:
        """The log-magnitude (B, bins, F) whose mel is nearest ``mel`` (B, n_mels, F) in least squares: the
        filterbank's pseudo-inverse applied to the mel's magnitudes, floored at the mel's own log floor."""
        inverse = _mel_pseudo_inverse(self.config, mel.device)
        dtype = torch.float64 if mel.dtype == torch.float64 else torch.float32  # float64: exact chunked vocoding
        linear = torch.einsum("km,bmf->bkf", inverse.to(dtype), mel.to(dtype).exp())
        return linear.clamp_min(self.config.log_clamp).log()

    def centre_phase(self, frames: int, device: torch.device) -> torch.Tensor:
        """(bins, frames): each bin's centre-frequency phase at each frame, reduced to [0, 2 pi)."""
        t = torch.arange(frames, device=device) % self.period  # the term repeats: keep the angles small
        return torch.remainder(self.advance.to(device) * t.to(self.advance.dtype), 2 * math.pi)

    def forward(self, tokens: torch.Tensor, mel: torch.Tensor | None = None) -> torch.Tensor:
        x = self.to_spectrum(self.norm(tokens.transpose(1, 2))).transpose(1, 2)
        with torch.autocast(tokens.device.type, enabled=False):
            # float32 whatever the autocast; float64 where the head runs in it (vocode's exact chunking)
            x = x.double() if x.dtype == torch.float64 else x.float()
            log_magnitude, phase = x.split(self.bins, dim=1)
            if self.magnitude_prior:
                if mel is None:
                    raise ValueError("ISTFTHead(magnitude_prior=True) needs the mel: head(tokens, mel)")
                log_magnitude = log_magnitude + self.prior(mel)
            if self.phase_advance:
                phase = phase + self.centre_phase(phase.shape[-1], phase.device)
            magnitude = log_magnitude.clamp(max=MAX_LOG_MAGNITUDE).exp()
            iterations = self.phase_iterations if self.iterations_now is None else self.iterations_now
            if iterations:
                spectrum = project_phase(magnitude, phase, iterations, self.istft, self.config)
            else:
                spectrum = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
            return self.istft(spectrum).unsqueeze(1)
