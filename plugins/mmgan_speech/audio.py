"""WAV input and output with scipy only: float32 mono in [-1, 1] at the mel's sample rate, and int16 out.

Formats read: PCM 8-bit (unsigned), 16-, 24-, 32- and 64-bit (signed), and IEEE float 32/64, any number of
channels (downmixed by the mean). scipy reads 24-bit PCM into int32 shifted left by 8 bits, so every signed
integer format is scaled by its container's full scale (2**15, 2**31, 2**63) and comes out right.

Refused with a one-line :class:`~mmgan.errors.DataError` naming the file: a missing file, a file that is not
a RIFF/WAVE file (text, an mp3 renamed .wav, an empty file), a compressed sample format (mu-law, A-law,
ADPCM, ...), a clip with zero samples, non-finite float samples, and a truncated file. Truncation is refused
rather than read partially: a WAV whose header promises more data than the file holds is almost always an
interrupted copy or download, and a training set should skip it (the caller counts the ``DataError``) rather
than learn from a clip that silently stops early.
"""

from __future__ import annotations

import io
import math
import os
import struct
import warnings
import wave as wave_module
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import scipy.io.wavfile
import scipy.signal

from mmgan.errors import DataError
from mmgan.files import atomic_path

__all__ = ["is_silent", "peak_normalize", "read_wav", "read_wav_bytes", "wav_bytes", "write_wav"]

_EXPECTED = "expected a PCM (8/16/24/32-bit) or float WAV file"


MIN_RATE, MAX_RATE = 4_000, 384_000

def _load(path: Path | str, source: Path | BinaryIO | None = None) -> tuple[int, np.ndarray]:
    """scipy's read of ``source`` (default: the file ``path``), with every failure (and its truncation
    warning) turned into one DataError line naming ``path``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", scipy.io.wavfile.WavFileWarning)
        try:
            rate, data = scipy.io.wavfile.read(path if source is None else source, mmap=False)
        except ValueError as err:
            message = (str(err).splitlines() or [type(err).__name__])[0].rstrip(".")
            if message.startswith(("File format", "Not a WAV file")):
                raise DataError(f"{path}: not a WAV file ({message}); {_EXPECTED}") from err
            if "format" in message or "bit depth" in message:
                raise DataError(f"{path}: unsupported WAV sample format ({message}); {_EXPECTED}") from err
            # "Unexpected end of file", "Incomplete chunk ID", odd byte counts: the file stops mid-chunk
            raise DataError(f"{path}: truncated or corrupt WAV file ({message}); re-copy or remove it") from err
        except (struct.error, EOFError) as err:  # a header cut short inside a fixed-size field
            raise DataError(f"{path}: truncated or corrupt WAV file ({err}); re-copy or remove it") from err
    for warning in caught:
        if issubclass(warning.category, scipy.io.wavfile.WavFileWarning) and "EOF" in str(warning.message):
            raise DataError(f"{path}: truncated WAV file ({str(warning.message).rstrip('.')}); re-copy or remove it")
    return rate, data


def _to_float(data: np.ndarray, path: Path | str) -> np.ndarray:
    """Samples in scipy's dtype to float64 in [-1, 1]."""
    if data.dtype == np.uint8:
        # 8-bit WAV is the only unsigned PCM: silence is 128
        return (data.astype(np.float64) - 128.0) / 128.0
    if data.dtype.kind == "i":
        return data.astype(np.float64) / float(2 ** (8 * data.dtype.itemsize - 1))
    if data.dtype.kind == "f":
        samples = data.astype(np.float64)
        if not np.all(np.isfinite(samples)):
            raise DataError(f"{path}: float WAV holds NaN or infinite samples; expected finite samples in [-1, 1]")
        # float WAVs may exceed full scale; clipping keeps the [-1, 1] promise that tanh generators rely on
        return np.clip(samples, -1.0, 1.0)
    raise DataError(f"{path}: unsupported WAV sample type {data.dtype}; {_EXPECTED}")


def read_wav(path: str | os.PathLike[str], sample_rate: int = 22050) -> np.ndarray:
    """Read a WAV file as float32 mono in [-1, 1] at ``sample_rate``, shape (samples,).

    Channels are averaged; another rate is converted with ``scipy.signal.resample_poly`` by the reduced
    fraction ``sample_rate / file_rate``. Raises :class:`~mmgan.errors.DataError` (one line naming the file)
    for a missing, non-WAV, truncated or empty file, or a sample format it cannot decode.
    """
    if sample_rate <= 0:
        raise ValueError(f"read_wav: sample_rate must be positive, got {sample_rate}")
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file; expected a WAV file")
    if not path.is_file():
        raise DataError(f"{path}: not a file; expected a WAV file")
    return _decoded(path, *_load(path), sample_rate)


def read_wav_bytes(data: bytes, name: str, sample_rate: int = 22050) -> np.ndarray:
    """:func:`read_wav` for the bytes of a WAV file (a shard member, say); errors name ``name``."""
    if sample_rate <= 0:
        raise ValueError(f"read_wav_bytes: sample_rate must be positive, got {sample_rate}")
    return _decoded(name, *_load(name, io.BytesIO(data)), sample_rate)


def _decoded(path: Path | str, rate: int, data: np.ndarray, sample_rate: int) -> np.ndarray:
    if data.size == 0:
        raise DataError(f"{path}: WAV file holds no samples; expected a non-empty clip")
    if not MIN_RATE <= rate <= MAX_RATE:
        # a corrupt header's rate would make resampling blow one clip up to hours of audio
        raise DataError(f"{path}: WAV header gives sample rate {rate} Hz; expected {MIN_RATE} to {MAX_RATE} Hz")
    samples = _to_float(data, path)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if rate != sample_rate:
        # resample_poly wants the smallest up/down pair: 22050/16000 -> 441/320, 22050/44100 -> 1/2
        common = math.gcd(int(sample_rate), int(rate))
        samples = scipy.signal.resample_poly(samples, sample_rate // common, rate // common)
        # the anti-aliasing filter can ring slightly past full scale
        samples = np.clip(samples, -1.0, 1.0)
    return samples.astype(np.float32)


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


def peak_normalize(wave: np.ndarray, peak: float = 0.95, eps: float = 1e-8) -> np.ndarray:
    """Scale ``wave`` so its largest absolute sample is ``peak``; ``eps`` keeps an all-zero wave at zero.

    Works on numpy arrays and torch tensors alike and keeps the input's type and dtype.
    """
    if len(wave) == 0:
        return wave
    return wave * (peak / (float(abs(wave).max()) + eps))


def is_silent(wave: np.ndarray, threshold_db: float = -60.0) -> bool:
    """True when the wave's peak is below ``threshold_db`` dB full scale (an empty wave is silent)."""
    if hasattr(wave, "detach"):
        wave = wave.detach().cpu().numpy()
    samples = np.asarray(wave)
    if samples.size == 0:
        return True
    peak = float(np.max(np.abs(samples)))
    return peak <= 0.0 or 20.0 * math.log10(peak) < threshold_db
