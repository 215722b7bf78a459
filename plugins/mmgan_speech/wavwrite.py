"""WAV output: float in [-1, 1] to 16-bit PCM, whole or a chunk at a time, written beside the target and renamed
into place (re-exported by :mod:`mmgan_speech.audio`)."""

from __future__ import annotations

import io
import os
import wave as wave_module
from collections.abc import Iterable

import numpy as np
import scipy.io.wavfile

from mmgan.files import atomic_path


def write_wav(path: str | os.PathLike[str], wave: np.ndarray, sample_rate: int) -> None:
    """Write ``wave`` (samples,) or (samples, channels), float in [-1, 1], as a 16-bit PCM WAV file.

    Values beyond [-1, 1] are clipped. The file is written beside ``path`` and renamed into place, so a failed
    write leaves any existing file untouched. A torch tensor is accepted too (detached and moved to the CPU).
    """
    pcm = _pcm16(wave, path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        scipy.io.wavfile.write(handle, int(sample_rate), pcm)


def wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    """The bytes of the 16-bit PCM WAV file :func:`write_wav` would write (for shard members)."""
    handle = io.BytesIO()
    scipy.io.wavfile.write(handle, int(sample_rate), _pcm16(wave, "<bytes>"))
    return handle.getvalue()


def _pcm16(wave: np.ndarray, path: object) -> np.ndarray:
    if hasattr(wave, "detach"):  # a torch.Tensor, without importing torch here
        wave = wave.detach().cpu().numpy()
    samples = np.asarray(wave, dtype=np.float64)
    if samples.ndim not in (1, 2):
        raise ValueError(f"write_wav expects a wave of shape (samples,) or (samples, channels), got {samples.shape}")
    if not np.all(np.isfinite(samples)):
        raise ValueError(f"write_wav: wave for {path} holds NaN or infinite samples")
    # clip before scaling so the range stays symmetric: +-1.0 -> +-32767
    return np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


def write_wav_stream(path: str | os.PathLike[str], chunks: Iterable[np.ndarray], sample_rate: int) -> int:
    """Write mono float chunks in [-1, 1] as one 16-bit PCM WAV, a chunk at a time; returns the samples.

    Memory is one chunk whatever the length. Written beside ``path`` and renamed into place when complete.
    """
    total = 0
    # the file is opened first: wave.open on a path that cannot be created fails half-built, and the
    # half-built writer's __del__ would print a traceback after the one-line error
    with atomic_path(path) as tmp, open(tmp, "wb") as handle, wave_module.open(handle, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        for chunk in chunks:
            if hasattr(chunk, "detach"):
                chunk = chunk.detach().cpu().numpy()
            samples = np.asarray(chunk, dtype=np.float64).reshape(-1)  # as write_wav rounds
            if not np.all(np.isfinite(samples)):
                raise ValueError(f"write_wav_stream: wave for {path} holds NaN or infinite samples")
            out.writeframes((np.round(np.clip(samples, -1.0, 1.0) * 32767.0)).astype("<i2").tobytes())
            total += samples.size
    return total
