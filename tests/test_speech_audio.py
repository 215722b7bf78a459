"""WAV input and output: every sample format round-trips, rates convert, and every bad file is one clear line."""

from __future__ import annotations

import logging
import math
import struct
import wave as wave_module
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile
import torch

from mmgan.errors import DataError, StorageError
from mmgan_speech.audio import WavBlocks, is_silent, peak_normalize, read_wav, write_wav

SR = 22050


def sine(freq: float = 440.0, rate: int = SR, seconds: float = 0.25, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)


def dominant_frequency(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[np.argmax(spectrum)])


def write_24bit(path: Path, x: np.ndarray, rate: int = SR) -> None:
    """scipy cannot write 24-bit WAV, so pack the three little-endian bytes by hand with the wave module."""
    ints = np.round(x * (2**23 - 1)).astype("<i4")
    packed = ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()  # drop the top (sign-extension) byte
    with wave_module.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(3)
        w.setframerate(rate)
        w.writeframes(packed)


def assert_one_line_naming(err: pytest.ExceptionInfo, path: Path) -> None:
    message = str(err.value)
    assert str(path) in message and "\n" not in message, message


@pytest.mark.parametrize(
    ("dtype", "scale", "offset", "atol"),
    [("int16", 32767, 0, 1 / 32768), ("int32", 2**31 - 1, 0, 1e-7), ("float32", 1, 0, 1e-7),
     ("uint8", 127, 128, 1 / 128)],
)
def test_round_trip_each_sample_format(tmp_path, dtype, scale, offset, atol):
    x = sine()
    path = tmp_path / f"{dtype}.wav"
    samples = x if dtype.startswith("float") else np.round(x * scale) + offset
    scipy.io.wavfile.write(path, SR, samples.astype(dtype))
    got = read_wav(path)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, x, atol=atol + 1e-7)


def test_uint8_silence_is_zero(tmp_path):
    path = tmp_path / "u8.wav"
    scipy.io.wavfile.write(path, SR, np.full(1000, 128, np.uint8))
    assert np.all(read_wav(path) == 0.0)


def test_24bit_round_trip(tmp_path):
    x = sine()
    x[:4] = [1.0, -1.0, 0.0, -0.5]  # full scale both ways and a negative value test the sign handling
    path = tmp_path / "pcm24.wav"
    write_24bit(path, x)
    np.testing.assert_allclose(read_wav(path), x, atol=2 / 2**23)


def test_float64_within_full_scale_is_read_as_it_is(tmp_path, caplog):
    x = sine()
    x[0] = 1.0
    path = tmp_path / "f64.wav"
    scipy.io.wavfile.write(path, SR, x)
    with caplog.at_level(logging.WARNING):
        np.testing.assert_allclose(read_wav(path), x, atol=1e-7)
    assert not caplog.records


@pytest.mark.parametrize("peak", [1e6, 1.7])
def test_a_float_wav_beyond_full_scale_is_scaled_down_by_its_peak_with_a_warning(tmp_path, caplog, peak):
    # faults row 82: a sine at 1e6 was clipped to [-1, 1] without a word, read as a square wave
    x = sine(amplitude=1.0)
    path = tmp_path / "loud.wav"
    scipy.io.wavfile.write(path, SR, np.stack([peak * x, 0.5 * peak * x], axis=1))  # float64, two channels
    expected = 0.75 * x / np.abs(x).max()
    for read in (read_wav, lambda p: WavBlocks(p).read(0, 10**9)):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            got = read(path)
        np.testing.assert_allclose(got, expected, atol=1e-6)  # the sine, not a square wave
        assert [r.getMessage() for r in caplog.records] == [
            f"{path}: float samples reach {peak:.4g}, {20 * math.log10(peak):.1f} dB beyond full scale (1.0); "
            f"scaled down by {peak:.4g} to fit [-1, 1] (clipping would distort the waveform)"]


def test_stereo_and_multichannel_are_downmixed_by_mean(tmp_path):
    left, right = sine(440), sine(660, amplitude=0.3)
    path = tmp_path / "stereo.wav"
    scipy.io.wavfile.write(path, SR, np.stack([left, right], axis=1).astype(np.float32))
    np.testing.assert_allclose(read_wav(path), (left + right) / 2, atol=1e-6)
    path = tmp_path / "quad.wav"
    scipy.io.wavfile.write(path, SR, np.stack([left, right, -left, right], axis=1).astype(np.float32))
    np.testing.assert_allclose(read_wav(path), right / 2, atol=1e-6)


@pytest.mark.parametrize("rate", [16000, 44100])
def test_resampling_keeps_duration_and_pitch(tmp_path, rate):
    path = tmp_path / f"{rate}.wav"
    scipy.io.wavfile.write(path, rate, (sine(440.0, rate, seconds=1.0) * 32767).astype(np.int16))
    got = read_wav(path, sample_rate=SR)
    assert len(got) == SR
    assert abs(dominant_frequency(got, SR) - 440.0) <= 1.0
    assert np.abs(got).max() <= 1.0
    # away from the edges the resampled wave is the same sine, sampled at the new rate
    middle = slice(2000, SR - 2000)
    np.testing.assert_allclose(got[middle], sine(440.0, SR, seconds=1.0)[middle], atol=5e-3)


def test_write_then_read_int16(tmp_path):
    x = sine()
    x[:2] = [1.5, -1.5]  # clipped on write
    path = tmp_path / "out" / "x.wav"
    write_wav(path, torch.from_numpy(x).float(), SR)
    rate, raw = scipy.io.wavfile.read(path)
    assert rate == SR and raw.dtype == np.int16
    assert raw[0] == 32767 and raw[1] == -32767
    np.testing.assert_allclose(read_wav(path)[2:], x[2:], atol=1 / 32768 + 1e-6)
    assert [p.name for p in path.parent.iterdir()] == ["x.wav"]


def test_failed_write_leaves_existing_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / "keep.wav"
    write_wav(path, sine(), SR)
    before = path.read_bytes()

    def half_write(handle, rate, data):
        handle.write(b"RIFF\x00\x00")
        raise OSError("disk full")

    monkeypatch.setattr(scipy.io.wavfile, "write", half_write)
    with pytest.raises(StorageError, match="cannot write .*keep.wav: disk full"):  # one line naming the file
        write_wav(path, np.zeros(100), SR)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.wav"]


def test_write_refuses_non_finite(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        write_wav(tmp_path / "nan.wav", np.array([0.0, np.nan]), SR)
    assert not (tmp_path / "nan.wav").exists()


def test_peak_normalize():
    x = sine(amplitude=0.2).astype(np.float32)
    y = peak_normalize(x)
    assert y.dtype == np.float32 and abs(np.abs(y).max() - 0.95) < 1e-6
    np.testing.assert_allclose(y / x.clip(1e-3).max(), x / x.max() * 0.95 / x.clip(1e-3).max(), rtol=1e-5)
    assert np.all(peak_normalize(np.zeros(10)) == 0.0)
    t = peak_normalize(torch.tensor([0.1, -0.4]), peak=0.5)
    torch.testing.assert_close(t, torch.tensor([0.125, -0.5]))


def test_is_silent():
    assert is_silent(np.zeros(100))
    assert is_silent(np.full(100, 10 ** (-61 / 20)))
    assert not is_silent(np.full(100, 10 ** (-59 / 20)))
    assert not is_silent(sine())
    assert is_silent(sine(amplitude=1e-3), threshold_db=-50.0)
    assert is_silent(np.zeros(0))
    assert not is_silent(torch.tensor([0.0, 0.5]))


# --- bad input: each is a DataError, one line, naming the file -------------------------------------------------


def good_wav_bytes(tmp_path: Path, n: int = 1000) -> bytes:
    path = tmp_path / "good.wav"
    scipy.io.wavfile.write(path, SR, (sine(seconds=n / SR) * 32767).astype(np.int16))
    return path.read_bytes()


def compressed_wav_bytes(format_tag: int) -> bytes:
    fmt = struct.pack("<HHIIHH", format_tag, 1, 8000, 8000, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 10) + bytes(10)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(DataError, match="no such file") as err:
        read_wav(path)
    assert_one_line_naming(err, path)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(DataError, match="not a file") as err:
        read_wav(tmp_path)
    assert_one_line_naming(err, tmp_path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("text.wav", b"hello, this is a transcript\n"),
        ("song.wav", b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90d" * 64),  # an mp3 renamed .wav
        ("empty.wav", b""),
        ("riff.wav", b"RIFF\x10\x00\x00\x00AVI LIST"),  # RIFF, but not WAVE
    ],
)
def test_not_a_wav(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match="not a WAV file") as err:
        read_wav(path)
    assert_one_line_naming(err, path)


@pytest.mark.parametrize("keep", [0.5, 0.9, 44, 30, 14])
def test_truncated(tmp_path, keep):
    data = good_wav_bytes(tmp_path)
    cut = int(len(data) * keep) if isinstance(keep, float) else keep  # mid-data, then header-only, mid-header
    path = tmp_path / "cut.wav"
    path.write_bytes(data[:cut])
    with pytest.raises(DataError, match="truncated") as err:
        read_wav(path)
    assert_one_line_naming(err, path)


def test_zero_samples(tmp_path):
    path = tmp_path / "zero.wav"
    scipy.io.wavfile.write(path, SR, np.zeros(0, np.int16))
    with pytest.raises(DataError, match="no samples") as err:
        read_wav(path)
    assert_one_line_naming(err, path)


@pytest.mark.parametrize(("tag", "what"), [(7, "MULAW"), (6, "ALAW"), (2, "ADPCM")])
def test_compressed_format_is_refused(tmp_path, tag, what):
    path = tmp_path / f"{what}.wav"
    path.write_bytes(compressed_wav_bytes(tag))
    with pytest.raises(DataError, match="unsupported WAV sample format") as err:
        read_wav(path)
    assert_one_line_naming(err, path)
    assert what in str(err.value)


def test_non_finite_float_samples(tmp_path):
    path = tmp_path / "nan.wav"
    scipy.io.wavfile.write(path, SR, np.array([0.0, np.inf, 0.1], np.float32))
    with pytest.raises(DataError, match="NaN or infinite") as err:
        read_wav(path)
    assert_one_line_naming(err, path)


def test_read_wav_output_is_in_range_for_full_scale_input(tmp_path):
    path = tmp_path / "loud.wav"
    scipy.io.wavfile.write(path, 16000, np.where(np.arange(16000) % 40 < 20, 32767, -32768).astype(np.int16))
    got = read_wav(path)
    assert got.min() >= -1.0 and got.max() <= 1.0 and math.isclose(len(got), SR, abs_tol=1)


def test_absurd_header_sample_rate_is_refused(tmp_path):
    import scipy.io.wavfile

    path = tmp_path / "one_hz.wav"
    scipy.io.wavfile.write(path, 1, np.zeros(500, np.int16) + 100)
    with pytest.raises(DataError, match="one_hz.wav: WAV header gives sample rate 1 Hz"):
        read_wav(path)


def test_streamed_wav_equals_one_write(tmp_path):
    from mmgan_speech.audio import write_wav_stream

    wave = (0.8 * np.sin(np.arange(5000) / 7)).astype(np.float32)
    write_wav(tmp_path / "whole.wav", wave, 22050)
    assert write_wav_stream(tmp_path / "parts.wav", np.array_split(wave, 7), 22050) == 5000
    assert np.array_equal(read_wav(tmp_path / "parts.wav"), read_wav(tmp_path / "whole.wav"))
    with pytest.raises(ValueError, match="NaN"):
        write_wav_stream(tmp_path / "parts.wav", [wave, np.array([np.nan], np.float32)], 22050)
    assert np.array_equal(read_wav(tmp_path / "parts.wav"), read_wav(tmp_path / "whole.wav")), "left untouched"
