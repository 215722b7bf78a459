"""Reconstruction losses of the speech plugin: log-mel L1 (HiFi-GAN) and multi-resolution STFT
(Parallel WaveGAN, Yamamoto et al. 2020). Both take waveforms (B, 1, T) or (B, T)."""

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
