"""The one log-mel spectrogram of mmgan's speech plugin: data, losses, ``mmgan vocode`` and metrics all use it.

The definition is the HiFi-GAN convention (Kong et al. 2020, ``meldataset.py``), which most public TTS
front-ends (Tacotron 2, FastSpeech 2, Glow-TTS, VITS recipes, ...) emit, so their mels can be vocoded as-is:

- 22050 Hz audio, n_fft 1024, hop 256, window 1024 (periodic Hann, ``torch.hann_window``'s default);
- the wave is reflect-padded by ``(n_fft - hop) / 2`` on both sides and framed with ``center=False``;
- magnitude ``sqrt(re^2 + im^2 + 1e-9)`` (the 1e-9 keeps the gradient finite at zero, as in HiFi-GAN);
- 80 triangular filters on the Slaney mel scale from 0 to 8000 Hz with Slaney (area) normalisation
  (what ``librosa.filters.mel(..., htk=False, norm="slaney")`` returns);
- natural log of the mel magnitudes clamped below at 1e-5 (silence is ``log(1e-5) = -11.51``).

Frame count: with ``pad = (n_fft - hop) // 2`` the padded length is ``T + n_fft - hop``, so
``frames = 1 + (T + 2 * pad - n_fft) // hop = T // hop``: exactly ``T / hop`` when ``T`` is a multiple of the
hop, and the trailing ``T % hop`` samples are dropped otherwise. Reflect padding needs ``T > pad`` (385
samples at the defaults).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mmgan.errors import ConfigError

__all__ = [
    "MelConfig",
    "MelSpectrogram",
    "hz_to_mel",
    "mel_filterbank",
    "mel_frequencies",
    "mel_spectrogram",
    "mel_to_hz",
    "num_frames",
]


@dataclass(frozen=True)
class MelConfig:
    """Every number of the mel definition; the defaults are the HiFi-GAN / TTS-front-end values.

    Frozen (and so hashable) because a changed mel would silently break every vocoder trained on it,
    and because filterbanks are cached per config.
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    log_clamp: float = 1e-5
    magnitude_eps: float = 1e-9

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"mel {name} must be a positive integer, got {value!r}")
        if self.win_length > self.n_fft:
            raise ConfigError(f"mel win_length ({self.win_length}) must be <= n_fft ({self.n_fft})")
        if self.hop_length > self.n_fft or (self.n_fft - self.hop_length) % 2:
            # the padding (n_fft - hop) / 2 must be a whole number for frames * hop == samples
            raise ConfigError(f"mel n_fft - hop_length must be even and >= 0, got {self.n_fft} - {self.hop_length}")
        if not 0.0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ConfigError(
                f"mel needs 0 <= fmin < fmax <= sample_rate / 2, got fmin={self.fmin}, fmax={self.fmax}, "
                f"sample_rate={self.sample_rate}"
            )
        if self.log_clamp <= 0 or self.magnitude_eps < 0:
            raise ConfigError(f"mel log_clamp must be > 0 and magnitude_eps >= 0, got {self.log_clamp}, "
                              f"{self.magnitude_eps}")

    @property
    def padding(self) -> int:
        """Reflect padding on each side of the wave: ``(n_fft - hop_length) // 2``."""
        return (self.n_fft - self.hop_length) // 2


# Slaney's Auditory Toolbox scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic above, with a step of
# ln(6.4) / 27 per mel so that the two pieces meet at 1 kHz = 15 mel.
_F_SP = 200.0 / 3.0
_BREAK_HZ = 1000.0
_BREAK_MEL = _BREAK_HZ / _F_SP
_LOG_STEP = math.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Frequencies in Hz to Slaney mels (float64)."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    # np.maximum keeps log() away from zero on the linear branch, which np.where evaluates too
    logarithmic = _BREAK_MEL + np.log(np.maximum(hz, _BREAK_HZ) / _BREAK_HZ) / _LOG_STEP
    return np.where(hz >= _BREAK_HZ, logarithmic, linear)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Slaney mels to frequencies in Hz (float64); the inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _F_SP
    logarithmic = _BREAK_HZ * np.exp(_LOG_STEP * (mel - _BREAK_MEL))
    return np.where(mel >= _BREAK_MEL, logarithmic, linear)


def mel_frequencies(config: MelConfig = MelConfig()) -> np.ndarray:
    """The ``n_mels + 2`` filter edge frequencies in Hz: filter ``i`` rises from edge ``i``, peaks at ``i + 1``.

    ``mel_frequencies(config)[1:-1]`` are the centre frequencies of the mel bins.
    """
    return mel_to_hz(np.linspace(hz_to_mel(config.fmin), hz_to_mel(config.fmax), config.n_mels + 2))


def mel_filterbank(config: MelConfig = MelConfig()) -> torch.Tensor:
    """The mel filterbank as a float32 CPU tensor of shape ``(n_mels, n_fft // 2 + 1)``.

    Triangles on the Slaney mel scale, each scaled to unit area in Hz-normalised terms
    (``2 / (right_edge - left_edge)``, Slaney normalisation), so a filter's height falls as it widens.
    Computed in float64 and rounded once, so it agrees with librosa's to float32 precision.
    """
    fft_hz = np.linspace(0.0, config.sample_rate / 2, config.n_fft // 2 + 1)
    edges = mel_frequencies(config)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (fft_hz[None, :] - left) / (centre - left)
    falling = (right - fft_hz[None, :]) / (right - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= 2.0 / (right - left)
    return torch.from_numpy(weights.astype(np.float32))


def num_frames(num_samples: int, config: MelConfig = MelConfig()) -> int:
    """Mel frames for a wave of ``num_samples``: ``num_samples // hop_length`` (see the module docstring)."""
    return num_samples // config.hop_length


@functools.lru_cache(maxsize=32)
def _cached_basis(config: MelConfig, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    # Built once per (config, device, dtype): a training step calls mel_spectrogram several times.
    # Callers must not modify the returned tensors in place.
    basis = mel_filterbank(config).to(device=device, dtype=dtype)
    window = torch.hann_window(config.win_length, device=device, dtype=dtype)
    return basis, window


def _log_mel(wave: torch.Tensor, config: MelConfig, basis: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    if not isinstance(wave, torch.Tensor) or wave.dim() not in (1, 2):
        shape = tuple(wave.shape) if isinstance(wave, torch.Tensor) else type(wave).__name__
        raise ValueError(f"mel_spectrogram expects a wave tensor of shape (B, T) or (T,), got {shape}")
    if not wave.is_floating_point():
        raise ValueError(f"mel_spectrogram expects a floating-point wave, got {wave.dtype}")
    single = wave.dim() == 1
    batch = wave.unsqueeze(0) if single else wave
    if batch.shape[-1] <= config.padding:
        raise ValueError(f"mel_spectrogram needs more than {config.padding} samples for its reflect padding, "
                         f"got {batch.shape[-1]}")
    # F.pad's reflect mode wants a channel dimension: (B, 1, T)
    padded = nn.functional.pad(batch.unsqueeze(1), (config.padding, config.padding), mode="reflect").squeeze(1)
    mel = _log_mel_of_padded(padded, config, basis, window)
    return mel.squeeze(0) if single else mel


def _log_mel_of_padded(padded: torch.Tensor, config: MelConfig, basis: torch.Tensor,
                       window: torch.Tensor) -> torch.Tensor:
    spec = torch.stft(padded, n_fft=config.n_fft, hop_length=config.hop_length, win_length=config.win_length,
                      window=window, center=False, normalized=False, onesided=True, return_complex=True)
    magnitude = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + config.magnitude_eps)
    return torch.log(torch.clamp(torch.matmul(basis, magnitude), min=config.log_clamp))


def mel_spectrogram(wave: torch.Tensor, config: MelConfig = MelConfig()) -> torch.Tensor:
    """Log-mel spectrogram of ``wave`` (B, T) -> (B, n_mels, T // hop); a (T,) wave gives (n_mels, T // hop).

    The wave is float in [-1, 1] at ``config.sample_rate``; the result has the wave's device and dtype and is
    differentiable (it is the mel loss). Filterbank and window are cached per (config, device, dtype).
    """
    if not isinstance(wave, torch.Tensor):
        raise ValueError(f"mel_spectrogram expects a torch.Tensor, got {type(wave).__name__}")
    basis, window = _cached_basis(config, wave.device, wave.dtype)
    return _log_mel(wave, config, basis, window)


class MelSpectrogram(nn.Module):
    """:func:`mel_spectrogram` as a module: filterbank and window are non-persistent buffers.

    ``.to(device)`` / ``.double()`` move them with the model, and ``state_dict()`` stays empty, so checkpoints
    never carry (and can never disagree with) the mel definition.
    """

    def __init__(self, config: MelConfig = MelConfig()) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("basis", mel_filterbank(config), persistent=False)
        self.register_buffer("window", torch.hann_window(config.win_length), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, n_mels, T // hop), or (T,) -> (n_mels, T // hop)."""
        return _log_mel(wave, self.config, self.basis, self.window)

    def extra_repr(self) -> str:
        c = self.config
        return (f"sample_rate={c.sample_rate}, n_fft={c.n_fft}, hop_length={c.hop_length}, "
                f"win_length={c.win_length}, n_mels={c.n_mels}, fmin={c.fmin}, fmax={c.fmax}")


def mel_spectrogram_long(wave: torch.Tensor, config: MelConfig = MelConfig(),
                         frames_per_chunk: int = 4096) -> torch.Tensor:
    """The same log-mel as ``mel_spectrogram`` of a long (T,) wave, computed chunk by chunk.

    The STFT of an hour of audio at once needs gigabytes; here each chunk of frames is computed from its
    own slice of the (once) reflect-padded wave, so memory stays a few chunks and the result is identical.
    """
    if wave.dim() != 1:
        raise ValueError(f"mel_spectrogram_long expects a (T,) wave, got {tuple(wave.shape)}")
    if wave.shape[-1] <= config.padding:
        raise ValueError(f"mel_spectrogram needs more than {config.padding} samples, got {wave.shape[-1]}")
    basis, window = _cached_basis(config, wave.device, wave.dtype)
    padded = nn.functional.pad(wave.view(1, 1, -1), (config.padding, config.padding), mode="reflect").view(-1)
    frames = wave.shape[-1] // config.hop_length
    chunks = []
    for start in range(0, frames, frames_per_chunk):
        stop = min(frames, start + frames_per_chunk)
        piece = padded[start * config.hop_length: (stop - 1) * config.hop_length + config.n_fft]
        chunks.append(_log_mel_of_padded(piece.unsqueeze(0), config, basis, window)[0])
    return torch.cat(chunks, dim=-1)
