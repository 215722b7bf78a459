"""The one mel definition: librosa's filterbank, hop alignment, the log clamp, and an independent numpy mel."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmgan.errors import ConfigError
from mmgan_speech.mel import (
    MelConfig,
    MelSpectrogram,
    mel_filterbank,
    mel_frequencies,
    mel_spectrogram,
    num_frames,
)

CONFIG = MelConfig()


@pytest.fixture
def librosa():
    """librosa is a dev-extra reference only; the tests that need it skip without it, the rest still run."""
    return pytest.importorskip("librosa")


def librosa_filterbank() -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0.0, fmax=8000.0, htk=False, norm="slaney")


def reference_log_mel(wave: np.ndarray) -> np.ndarray:
    """HiFi-GAN's mel written out by hand in float64: reflect pad, frame, periodic Hann, rfft, filterbank, log."""
    pad = (1024 - 256) // 2
    padded = np.pad(wave, (pad, pad), mode="reflect")
    frames = 1 + (len(padded) - 1024) // 256
    index = np.arange(1024)[None, :] + 256 * np.arange(frames)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)  # periodic Hann
    spectrum = np.fft.rfft(padded[index] * window, axis=1)
    magnitude = np.sqrt(spectrum.real**2 + spectrum.imag**2 + 1e-9)
    return np.log(np.maximum(librosa_filterbank().astype(np.float64) @ magnitude.T, 1e-5))


def test_defaults_are_the_hifigan_numbers():
    c = CONFIG
    assert (c.sample_rate, c.n_fft, c.hop_length, c.win_length, c.n_mels) == (22050, 1024, 256, 1024, 80)
    assert (c.fmin, c.fmax, c.log_clamp, c.padding) == (0.0, 8000.0, 1e-5, 384)


def test_filterbank_matches_librosa_slaney(librosa):
    ours = mel_filterbank(CONFIG)
    assert ours.shape == (80, 513) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), librosa_filterbank(), rtol=0, atol=1e-6)


def test_centre_frequencies_match_librosa(librosa):
    expected = librosa.mel_frequencies(n_mels=82, fmin=0.0, fmax=8000.0, htk=False)
    np.testing.assert_allclose(mel_frequencies(CONFIG), expected, rtol=1e-10)


@pytest.mark.parametrize("samples", [512, 8192, 22050 // 256 * 256, 256 * 37])
def test_frames_times_hop_is_samples(samples):
    wave = torch.randn(2, samples) * 0.1
    mel = mel_spectrogram(wave)
    assert mel.shape == (2, 80, samples // 256)
    assert mel.shape[-1] * 256 == samples


@pytest.mark.parametrize("samples", [385, 500, 8191, 8193, 22050])
def test_frame_count_formula_for_other_lengths(samples):
    mel = mel_spectrogram(torch.randn(samples) * 0.1)
    assert mel.shape == (80, samples // 256) == (80, num_frames(samples))


def test_too_short_for_reflect_padding_is_a_clear_error():
    with pytest.raises(ValueError, match="more than 384 samples"):
        mel_spectrogram(torch.zeros(384))


def test_silence_is_the_log_clamp():
    mel = mel_spectrogram(torch.zeros(1, 4096))
    torch.testing.assert_close(mel, torch.full_like(mel, math.log(1e-5)))


def test_sine_peaks_in_the_nearest_mel_bin():
    t = torch.arange(22050, dtype=torch.float64) / 22050
    mel = mel_spectrogram(0.5 * torch.sin(2 * math.pi * 1000.0 * t))
    centres = mel_frequencies(CONFIG)[1:-1]
    assert int(mel.mean(dim=-1).argmax()) == int(np.argmin(np.abs(centres - 1000.0)))


def test_batch_matches_single():
    waves = torch.randn(3, 4096) * 0.3
    batch = mel_spectrogram(waves)
    for i in range(3):
        torch.testing.assert_close(batch[i], mel_spectrogram(waves[i]), rtol=1e-5, atol=1e-5)


def test_matches_an_independent_numpy_mel(librosa):
    rng = np.random.default_rng(0)
    # speech-like level: a few harmonics plus noise, with a quiet stretch that reaches the clamp
    t = np.arange(8000) / 22050
    wave = 0.3 * np.sin(2 * np.pi * 180 * t) + 0.1 * np.sin(2 * np.pi * 2300 * t) + 0.02 * rng.standard_normal(8000)
    wave[5000:6500] = 0.0
    expected = reference_log_mel(wave)
    ours64 = mel_spectrogram(torch.from_numpy(wave)).numpy()
    np.testing.assert_allclose(ours64, expected, rtol=0, atol=1e-6)
    ours32 = mel_spectrogram(torch.from_numpy(wave).float()).numpy()
    np.testing.assert_allclose(ours32, expected, rtol=0, atol=5e-4)


def test_mel_is_differentiable():
    wave = (torch.randn(1, 2048) * 0.1).requires_grad_()
    mel_spectrogram(wave).mean().backward()
    assert torch.isfinite(wave.grad).all() and wave.grad.abs().sum() > 0


def test_module_has_empty_state_dict_and_follows_dtype():
    module = MelSpectrogram()
    assert module.state_dict() == {}
    wave = torch.randn(2, 4096) * 0.2
    torch.testing.assert_close(module(wave), mel_spectrogram(wave))
    module = module.to(torch.float64)
    assert module.basis.dtype == torch.float64 and module.window.dtype == torch.float64
    out = module(wave.double())
    assert out.dtype == torch.float64 and out.shape == (2, 80, 16)
    # the module's window was made in float32 and widened, the cached one made in float64: ~1e-8 apart
    torch.testing.assert_close(out, mel_spectrogram(wave.double()), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bad", [dict(fmax=12000.0), dict(hop_length=255), dict(n_mels=0), dict(win_length=2048)])
def test_invalid_config_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="mel"):
        MelConfig(**bad)


def test_long_mel_in_chunks_equals_the_whole_mel():
    from mmgan_speech.mel import mel_spectrogram_long

    wave = torch.randn(256 * 1000 + 17, generator=torch.Generator().manual_seed(0)) * 0.1
    whole = mel_spectrogram(wave)
    for chunk in (1, 97, 5000):
        torch.testing.assert_close(mel_spectrogram_long(wave, frames_per_chunk=chunk), whole, rtol=0, atol=1e-5)
