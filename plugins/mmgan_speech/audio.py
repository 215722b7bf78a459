"""WAV input and output with scipy only: float32 mono in [-1, 1] at the mel's sample rate, and int16 out.

Formats read: PCM 8-bit (unsigned), 16-, 24-, 32- and 64-bit (signed), and IEEE float 32/64, any number of
channels (downmixed by the mean). scipy reads 24-bit PCM into int32 shifted left by 8 bits, so every signed
integer format is scaled by its container's full scale (2**15, 2**31, 2**63) and comes out right.

Refused with a one-line :class:`~mmgan.errors.DataError` naming the file: a missing file, a file that is not
a RIFF/WAVE file (text, an mp3 renamed .wav, an empty file), a compressed sample format (mu-law, A-law,
ADPCM, ...), a clip with zero samples, non-finite float samples, and a truncated file. Truncation is refused
rather than read partially: a WAV whose header promises more data than the file holds is almost always an
interrupted copy or download, and a training set should skip it (the caller counts the ``DataError``) rather
than learn from a clip that silently stops early. That holds whichever field promises it: the RIFF chunk's
size or the data chunk's own, and for :func:`read_wav` and :class:`WavBlocks` (``mmgan vocode``) alike.

A float file whose samples go beyond full scale (1.0) is scaled down by its peak, with a warning naming the
file and how far beyond it is: see :func:`read_wav_scaled`.
"""

from __future__ import annotations

import io
import logging
import math
import os
import struct
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import scipy.io.wavfile
import scipy.signal

from mmgan.errors import DataError
from mmgan_speech.wavwrite import wav_bytes, write_wav, write_wav_stream

__all__ = [
    "WavBlocks",
    "is_silent",
    "peak_normalize",
    "read_wav",
    "read_wav_bytes",
    "read_wav_scaled",
    "wav_bytes",
    "write_wav",
    "write_wav_stream",
]

_EXPECTED = "expected a PCM (8/16/24/32-bit) or float WAV file"


MIN_RATE, MAX_RATE = 4_000, 384_000
logger = logging.getLogger(__name__)


class _Unmappable(Exception):
    """scipy cannot memory-map this file's samples (3-, 5-, 6- or 7-byte containers, 24-bit PCM above all)."""


def _load(path: Path | str, source: BinaryIO | None = None, mmap: bool = False) -> tuple[int, np.ndarray]:
    """scipy's read of ``source`` (default: the file ``path``), with every failure (and its truncation
    warning) turned into one DataError line naming ``path``. ``mmap``: the samples as a read-only map
    (the header checked, nothing decoded), or :class:`_Unmappable` where scipy cannot map them."""
    if source is None:
        with open(path, "rb") as handle:
            problem = _chunk_problem(handle)
    else:
        problem = _chunk_problem(source)
    if problem:
        raise DataError(f"{path}: {problem}; re-copy or remove it")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", scipy.io.wavfile.WavFileWarning)
        try:
            rate, data = scipy.io.wavfile.read(path if source is None else source, mmap=mmap)
        except ValueError as err:
            message = (str(err).splitlines() or [type(err).__name__])[0].rstrip(".")
            if mmap and "not compatible" in message:
                raise _Unmappable(message) from None
            if message.startswith(("File format", "Not a WAV file")):
                raise DataError(f"{path}: not a WAV file ({message}); {_EXPECTED}") from err
            if "format" in message or "bit depth" in message:
                raise DataError(f"{path}: unsupported WAV sample format ({message}); {_EXPECTED}") from err
            # "Unexpected end of file", "Incomplete chunk ID", odd byte counts: the file stops mid-chunk
            raise DataError(f"{path}: truncated or corrupt WAV file ({message}); re-copy or remove it") from err
        except (struct.error, EOFError) as err:  # a header cut short inside a fixed-size field
            raise DataError(f"{path}: truncated or corrupt WAV file ({err}); re-copy or remove it") from err
        except ZeroDivisionError:  # scipy divides by the header's channel count or block size (0, or 300 channels)
            raise DataError(f"{path}: corrupt WAV header (its channel count or block size cannot describe the "
                            f"samples); re-copy or remove it") from None
        except UnboundLocalError:
            # scipy's chunk loop ended without reading a fmt or a data chunk, and returns names it never bound:
            # a RIFF size shorter than the chunks it holds, or no data chunk at all (a chunk that runs past the
            # end of the file is _chunk_problem's, before scipy reads)
            raise DataError(f"{path}: truncated or corrupt WAV file (no fmt and data chunk within its RIFF "
                            f"size); re-copy or remove it") from None
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
        return samples  # beyond full scale: the caller divides by the file's peak (_full_scale)
    raise DataError(f"{path}: unsupported WAV sample type {data.dtype}; {_EXPECTED}")


def _chunk_problem(handle: BinaryIO) -> str | None:
    """What is wrong with the chunk sizes of a RIFF (or RIFX) WAVE file before its samples, or None: a chunk
    before the data chunk that runs past the end of the file (scipy then finds no data chunk and fails with
    an UnboundLocalError), or a data chunk that claims more bytes than the file holds (scipy reads what is
    there without a word, or refuses to memory-map it). Anything else (not RIFF, RF64, a header cut short)
    is left to scipy's own checks. ``handle`` is read from its start and left there."""
    handle.seek(0, os.SEEK_END)
    total = handle.tell()
    handle.seek(0)
    try:
        head = handle.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return None
        order = "<" if head[:4] == b"RIFF" else ">"
        position = 12
        while position + 8 <= total:
            handle.seek(position)
            chunk = handle.read(8)
            name, size = chunk[:4], struct.unpack(order + "I", chunk[4:])[0]
            held = total - position - 8
            if size > held:
                label = name.decode("latin-1").strip() or "unnamed"
                if name == b"data":
                    return (f"truncated WAV file (its data chunk claims {size} bytes; the file holds {held} "
                            f"after the chunk's header)")
                return (f"truncated or corrupt WAV file (its '{label}' chunk claims {size} bytes, past the end "
                        f"of the file: {held} bytes follow its header)")
            if name == b"data":
                return None
            position += 8 + size + (size & 1)
        return None
    finally:
        handle.seek(0)


def _full_scale(peak: float) -> float:
    """The divisor that brings a float file's samples within [-1, 1]: its peak where that is beyond full scale
    (1.0), else 1.0.

    A float WAV beyond full scale is nearly always a whole signal at the wrong level (int16 values written
    as float, a mix summed without a limiter), not a signal whose peaks were meant to be cut off. Clipping it
    turns a sine at 1e6 into a square wave, and the vocoder then reproduces that distortion; dividing by the
    peak keeps the waveform and only moves its level, which training throws away anyway (every clip is
    peak-normalised) and which a 16-bit output file cannot hold. So a vocoder user gets out what went in,
    at full scale; the warning says how far beyond it the file was."""
    return peak if peak > 1.0 else 1.0


def _beyond_full_scale(path: Path | str, peak: float) -> str:
    """The warning for a float file whose samples reach ``peak`` > 1: it names the file and how far beyond."""
    return (f"{path}: float samples reach {peak:.4g}, {20 * math.log10(peak):.1f} dB beyond full scale (1.0); "
            f"scaled down by {peak:.4g} to fit [-1, 1] (clipping would distort the waveform)")


def read_wav(path: str | os.PathLike[str], sample_rate: int = 22050) -> np.ndarray:
    """Read a WAV file as float32 mono in [-1, 1] at ``sample_rate``, shape (samples,).

    Channels are averaged; another rate is converted with ``scipy.signal.resample_poly`` by the reduced
    fraction ``sample_rate / file_rate``. Raises :class:`~mmgan.errors.DataError` (one line naming the file)
    for a missing, non-WAV, truncated or empty file, or a sample format it cannot decode.
    """
    samples, peak = read_wav_scaled(path, sample_rate)
    if peak > 1.0:
        logger.warning("%s", _beyond_full_scale(path, peak))
    return samples


def read_wav_scaled(path: str | os.PathLike[str], sample_rate: int = 22050) -> tuple[np.ndarray, float]:
    """:func:`read_wav` without its warning: ``(samples, peak)``, where ``peak`` is what a float file beyond
    full scale was divided by (:func:`_beyond_full_scale` words it), 1.0 for any other file. For callers that
    read many files and say once how many were scaled (a WAV folder)."""
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
    samples, peak = _decoded(name, *_load(name, io.BytesIO(data)), sample_rate)
    if peak > 1.0:
        logger.warning("%s", _beyond_full_scale(name, peak))
    return samples


def _check_decodable(path: Path | str, rate: int, size: int) -> None:
    if size == 0:
        raise DataError(f"{path}: WAV file holds no samples; expected a non-empty clip")
    if not MIN_RATE <= rate <= MAX_RATE:
        # a corrupt header's rate would make resampling blow one clip up to hours of audio
        raise DataError(f"{path}: WAV header gives sample rate {rate} Hz; expected {MIN_RATE} to {MAX_RATE} Hz")


def _mono(data: np.ndarray, path: Path | str, scale: float = 1.0) -> np.ndarray:
    """Samples in scipy's layout ((samples,) or (samples, channels)) to float64 mono in [-1, 1]; ``scale``: a
    float file's peak beyond full scale (:func:`_full_scale`), which every sample is divided by."""
    samples = _to_float(data, path)
    if scale != 1.0:
        samples = samples / scale
    return samples.mean(axis=1) if samples.ndim == 2 else samples


def _resample_factors(file_rate: int, sample_rate: int) -> tuple[int, int]:
    """``(up, down)`` for ``resample_poly``: the reduced fraction, 22050/16000 -> 441/320, 22050/44100 -> 1/2."""
    common = math.gcd(int(sample_rate), int(file_rate))
    return sample_rate // common, file_rate // common


def _decoded(path: Path | str, rate: int, data: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
    """The samples as float32 mono at ``sample_rate`` and the peak a float file was divided by (1.0: none)."""
    _check_decodable(path, rate, data.size)
    # a NaN peak is not beyond full scale: _mono's _to_float then refuses the file
    scale = _full_scale(float(np.max(np.abs(data)))) if data.dtype.kind == "f" else 1.0
    samples = _mono(data, path, scale)
    if rate != sample_rate:
        samples = scipy.signal.resample_poly(samples, *_resample_factors(rate, sample_rate))
        # the anti-aliasing filter can ring slightly past full scale
        samples = np.clip(samples, -1.0, 1.0)
    return samples.astype(np.float32), scale


class WavBlocks:
    """A WAV file read a block at a time: ``read(start, stop)`` is ``read_wav(path, sample_rate)[start:stop]``.

    For inputs of any length (``mmgan vocode`` of an hour of audio): memory holds one block, never the file.
    The header is checked as :func:`read_wav` checks it, with the same one-line DataErrors, and a float
    file's samples are checked for NaN and infinity before anything is returned. Blocks are read from the
    file at their offset (``np.fromfile``), not through a memory map: a map's pages, once read, would stay
    in the process's resident memory. A file at another rate is resampled block by block, each block
    with the polyphase filter's context on both sides and starting on a multiple of ``down``: every output
    sample is then the same sum of the same products as in the whole-file ``resample_poly``.
    """

    def __init__(self, path: str | os.PathLike[str], sample_rate: int = 22050) -> None:
        if sample_rate <= 0:
            raise ValueError(f"WavBlocks: sample_rate must be positive, got {sample_rate}")
        path = Path(path)
        if not path.exists():
            raise DataError(f"{path}: no such file; expected a WAV file")
        if not path.is_file():
            raise DataError(f"{path}: not a file; expected a WAV file")
        self.path, self.sample_rate, self.whole = path, sample_rate, None
        try:
            self.rate, mapped = _load(path, mmap=True)
            # scipy's layout: (samples,) for mono, (samples, channels) otherwise
            self.channels = 1 if mapped.ndim == 1 else mapped.shape[1]
            self.dtype, self.offset, self.source_length = mapped.dtype, mapped.offset, mapped.shape[0]
            self.container = 0  # read in scipy's dtype
            del mapped
        except _Unmappable:
            layout = _packed_layout(path)
            if layout is None:
                self.whole = read_wav(path, sample_rate)  # or its one-line error
                logger.info("%s: packed samples in a RIFX or RF64 file: decoded whole, not in blocks", path)
                self.rate, self.channels, self.container, self.offset = sample_rate, 1, 0, 0
                self.dtype, self.source_length = self.whole.dtype, len(self.whole)
            else:
                self.rate, self.channels, self.container, self.offset, self.source_length = layout
                self.dtype = np.dtype("<i4" if self.container == 3 else "<i8")  # how scipy widens packed PCM
        _check_decodable(path, self.rate, self.source_length * self.channels)
        self.up, self.down = _resample_factors(self.rate, sample_rate)
        self.length = -(-self.source_length * self.up // self.down)
        # resample_poly's filter reaches half_len samples of the upsampled signal either side
        self.half_len = 10 * max(self.up, self.down)
        self.scale = 1.0  # a float file's peak beyond full scale, as read_wav divides by it
        if self.dtype.kind == "f" and self.whole is None:
            peak = 0.0
            for start in range(0, self.source_length, 1 << 20):
                block = _to_float(self._raw(start, start + (1 << 20)), path)  # raises on NaN or infinity
                peak = max(peak, float(np.max(np.abs(block))))
            self.scale = _full_scale(peak)
            if self.scale > 1.0:
                logger.warning("%s", _beyond_full_scale(path, peak))

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)`` (clamped to the clip) as float32 mono at ``sample_rate``."""
        start, stop = max(0, start), min(self.length, stop)
        if stop <= start:
            return np.zeros(0, np.float32)
        if self.up == self.down:
            return self._source(start, stop).astype(np.float32)
        up, down = self.up, self.down
        # output n sums input k for |n * down - k * up| <= half_len; the block starts on a multiple of down
        # so that its outputs are the whole file's from a * up / down on
        first = max(0, ((start * down - self.half_len) // up - 1) // down * down)
        last = min(self.source_length, -(-(stop * down + self.half_len) // up) + 1)
        shift = first // down * up
        samples = scipy.signal.resample_poly(self._source(first, last), up, down)[start - shift : stop - shift]
        return np.clip(samples, -1.0, 1.0).astype(np.float32)

    def _source(self, start: int, stop: int) -> np.ndarray:
        """The file's samples ``[start, stop)`` at its own rate: float64 mono in [-1, 1], as read_wav decodes."""
        if self.whole is not None:
            start, stop = max(0, start), min(self.source_length, stop)
            return self.whole[start:stop].astype(np.float64)
        return _mono(self._raw(start, stop), self.path, self.scale)

    def _raw(self, start: int, stop: int) -> np.ndarray:
        """The file's samples ``[start, stop)`` in scipy's dtype and layout ((samples,) or (samples, channels))."""
        start, stop = max(0, start), min(self.source_length, stop)
        width = self.container or self.dtype.itemsize
        with open(self.path, "rb") as handle:
            handle.seek(self.offset + start * width * self.channels)
            count = (stop - start) * self.channels * (1 if not self.container else width)
            raw = np.fromfile(handle, dtype=self.dtype if not self.container else np.uint8, count=count)
        if self.container:
            # scipy's reading of packed PCM: the bytes at the top of a wider little-endian integer
            wide = np.zeros((raw.size // width, self.dtype.itemsize), np.uint8)
            wide[:, -width:] = raw.reshape(-1, width)
            raw = wide.view(self.dtype).reshape(-1)
        if raw.size != (stop - start) * self.channels:
            raise DataError(f"{self.path}: truncated WAV file (it changed or shrank while being read); re-copy it")
        return raw if self.channels == 1 else raw.reshape(-1, self.channels)


def _packed_layout(path: Path) -> tuple[int, int, int, int, int] | None:
    """``(rate, channels, bytes per sample, data offset, samples per channel)`` of a little-endian RIFF WAV
    file whose PCM samples scipy cannot map (3-byte 24-bit ones above all): scipy has read and accepted its
    header up to the data chunk. None for anything else (RIFX, RF64, a data chunk past the end of the
    file): :func:`read_wav` decodes those whole, or says in one line what is wrong with them."""
    fmt = None
    with open(path, "rb") as handle:
        head = handle.read(12)
        while head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            chunk = handle.read(8)
            if len(chunk) < 8:
                break
            name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if name == b"fmt ":
                fmt = handle.read(16)
                handle.seek(size + (size & 1) - 16, os.SEEK_CUR)
            elif name == b"data" and fmt is not None and len(fmt) == 16:
                channels, rate, _, block_align = struct.unpack("<HIIH", fmt[2:14])
                offset, width = handle.tell(), block_align // max(channels, 1)
                if channels and width in (3, 5, 6, 7) and offset + size <= path.stat().st_size:
                    return rate, channels, width, offset, size // block_align
                break
            else:
                handle.seek(size + (size & 1), os.SEEK_CUR)
    return None


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
