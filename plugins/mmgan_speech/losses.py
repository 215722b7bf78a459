"""Reconstruction losses of the speech plugin: log-mel L1 (HiFi-GAN), multi-resolution STFT (Parallel
WaveGAN, Yamamoto et al. 2020) and the phase-derivative loss. All take waveforms (B, 1, T) or (B, T)."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from mmgan_speech.mel import MelConfig, mel_spectrogram

MEL = MelConfig()
# (n_fft, hop, window) of Parallel WaveGAN's three resolutions
STFT_RESOLUTIONS: tuple[tuple[int, int, int], ...] = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))


def _flat(wave: torch.Tensor) -> torch.Tensor:
    return wave.reshape(-1, wave.shape[-1])


def mel_l1(fake: torch.Tensor, real: torch.Tensor, config: MelConfig = MEL) -> torch.Tensor:
    """Mean absolute difference of the log-mel spectrograms (the one mel definition, ``mel.py``)."""
    return F.l1_loss(mel_spectrogram(_flat(fake).float(), config), mel_spectrogram(_flat(real).float(), config))


@functools.cache
def _window(length: int, device: torch.device) -> torch.Tensor:
    return torch.hann_window(length, device=device)


def _magnitude(wave: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    spec = torch.stft(wave, n_fft, hop, win, _window(win, wave.device), return_complex=True)
    # the floor keeps sqrt's gradient finite on exact silence
    return (spec.real.square() + spec.imag.square()).clamp_min(1e-7).sqrt()


def multi_resolution_stft(fake: torch.Tensor, real: torch.Tensor,
                          resolutions: tuple[tuple[int, int, int], ...] = STFT_RESOLUTIONS) -> torch.Tensor:
    """Spectral convergence + log-magnitude L1, averaged over the resolutions."""
    fake, real = _flat(fake).float(), _flat(real).float()
    total = fake.new_zeros(())
    for n_fft, hop, win in resolutions:
        f, r = _magnitude(fake, n_fft, hop, win), _magnitude(real, n_fft, hop, win)
        convergence = torch.linalg.norm(r - f, dim=(1, 2)) / torch.linalg.norm(r, dim=(1, 2)).clamp_min(1e-7)
        total = total + convergence.mean() + F.l1_loss(f.log(), r.log())
    return total / len(resolutions)


def _phase_distance(fake: torch.Tensor, real: torch.Tensor, weight: torch.Tensor, dim: int) -> torch.Tensor:
    """Weighted mean of ``1 - cos`` of the difference between fake's and real's phase steps along ``dim``."""
    length = fake.shape[dim]

    def later(x: torch.Tensor) -> torch.Tensor:
        return x.narrow(dim, 1, length - 1)

    def earlier(x: torch.Tensor) -> torch.Tensor:
        return x.narrow(dim, 0, length - 1)

    def step(spec: torch.Tensor) -> torch.Tensor:  # z[k] * conj(z[k - 1]): its angle is the phase step
        return later(spec) * earlier(spec).conj()

    f, r = step(fake), step(real)
    # cos of the angle between the two steps; the floor keeps the gradient finite where fake is silent
    cosine = (f * r.conj()).real / (f.abs() * r.abs() + 1e-6)
    w = (later(weight) * earlier(weight)).sqrt()
    return ((1 - cosine) * w).sum() / w.sum().clamp_min(1e-7)


def phase_derivative_loss(fake: torch.Tensor, real: torch.Tensor, config: MelConfig = MEL) -> torch.Tensor:
    """How far the fake's phase moves unlike the real's, in the plugin's own framing (``mel.py``).

    A mel says nothing of a wave's absolute phase (where a harmonic's cycle starts), but the phase's
    steps are local: along time they are each bin's instantaneous frequency, along frequency its group
    delay, and a vocoder must get both right to sound like speech rather than like noise shaped by a
    mel. Each is compared as ``1 - cos`` of the difference of the steps (anti-wrapped: a step of
    2 pi - e equals one of -e; 0 for equal steps, 2 for opposite ones), averaged with the real
    magnitude as the weight, so that silent bins, whose phase is noise, count for little. The loss is
    the mean of the two, in [0, 2]; the idea of supervising phase derivatives is APNet's (Ai & Ling
    2023), the form here is our own.
    """
    from mmgan_speech.vocos import frame_spectrum

    fake_spec = frame_spectrum(_flat(fake).float(), config)
    real_spec = frame_spectrum(_flat(real).float(), config)
    # each scaled by its own clip's mean magnitude (held constant): the loss does not depend on either's gain,
    # and the floor in _phase_distance is relative to each
    def unit(spec: torch.Tensor) -> torch.Tensor:
        return spec / spec.abs().mean(dim=(1, 2), keepdim=True).detach().clamp_min(1e-7)

    fake_spec, real_spec = unit(fake_spec), unit(real_spec)
    weight = real_spec.abs().detach()
    time = _phase_distance(fake_spec, real_spec, weight, dim=2)
    frequency = _phase_distance(fake_spec, real_spec, weight, dim=1)
    return (time + frequency) / 2
