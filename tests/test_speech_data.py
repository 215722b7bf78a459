"""Speech data: the built-in speech-like set is deterministic and speech-like; WAV folders skip bad clips, count."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile
import torch

from mmgan.errors import DataError
from mmgan_speech.audio import read_wav, write_wav
from mmgan_speech.datasets import SpeechLikeDataset, WavFolderDataset, open_speech_source

SR = 22050
SEG = 1024


def tone(samples: int, freq: float = 220.0, rate: int = SR, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(samples) / rate
    # a chirp, so every window of the clip is distinguishable from every other
    return amplitude * np.sin(2 * np.pi * (freq + 200.0 * t) * t)


def frames(x: np.ndarray, size: int) -> np.ndarray:
    return x[: x.size // size * size].reshape(-1, size)


# --- built-in --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def speech_items() -> list[np.ndarray]:
    ds = SpeechLikeDataset(length=100)
    return [ds[i][0].numpy() for i in range(12)]


def test_builtin_shape_range_and_determinism() -> None:
    a, b = SpeechLikeDataset(length=50, seed=3), SpeechLikeDataset(length=50, seed=3)
    x = a[7]
    assert x.shape == (1, 8192) and x.dtype == torch.float32
    assert float(x.abs().max()) == pytest.approx(0.95, abs=1e-6)
    assert torch.equal(x, b[7])
    assert not torch.allclose(x, a[8])
    assert not torch.allclose(x, SpeechLikeDataset(length=50, seed=4)[7])
    assert len(a) == 50
    with pytest.raises(IndexError):
        a[50]


def test_builtin_clip_is_deterministic_held_out_and_long() -> None:
    ds = SpeechLikeDataset(segment_length=1024, length=10)
    clip = ds.clip(2, 1.5)
    assert clip.shape == (1, round(1.5 * SR)) and clip.dtype == torch.float32
    assert torch.equal(clip, SpeechLikeDataset(segment_length=1024, length=10).clip(2, 1.5))
    assert not torch.allclose(clip[:, :1024], ds[2])
    assert not torch.allclose(clip, ds.clip(3, 1.5))
    assert float(clip.abs().max()) == pytest.approx(0.95, abs=1e-6)


def test_builtin_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="multiple of the mel hop 256"):
        SpeechLikeDataset(segment_length=1000)
    with pytest.raises(ValueError, match="length"):
        SpeechLikeDataset(length=0)


def test_builtin_has_voiced_frames_with_f0_in_range(speech_items: list[np.ndarray]) -> None:
    lags = np.arange(SR // 300, SR // 80 + 1)
    periodic, f0s = 0, []
    for x in speech_items:
        for frame in frames(x, 1024):
            frame = frame - frame.mean()
            if np.sqrt(np.mean(frame**2)) < 0.1:
                continue
            ac = np.correlate(frame, frame, "full")[frame.size - 1:]
            ac = ac / ac[0]
            lag = lags[np.argmax(ac[lags])]
            if ac[lag] > 0.6:
                periodic += 1
                f0s.append(SR / lag)
    assert periodic >= 10
    assert 80.0 <= np.median(f0s) <= 300.0


def test_builtin_has_pauses_and_noise_bursts(speech_items: list[np.ndarray]) -> None:
    x = np.concatenate(speech_items)
    rms = np.sqrt(np.mean(frames(x, 256) ** 2, axis=1))
    silent = rms < 0.01  # -40 dB under the 0.95 peak
    assert 0.03 < silent.mean() < 0.6
    # noise bursts: loud frames whose energy sits mostly above 2.5 kHz (voiced frames sit below)
    spectra = np.abs(np.fft.rfft(frames(x, 256) * np.hanning(256), axis=1)) ** 2
    high = spectra[:, np.fft.rfftfreq(256, 1 / SR) > 2500].sum(axis=1) / (spectra.sum(axis=1) + 1e-12)
    noisy = (high > 0.6) & (rms > 0.02)
    voiced = (high < 0.2) & (rms > 0.05)
    assert noisy.sum() >= 5 and voiced.sum() >= 20
    # and the zero-crossing rate tells the same story: noise crosses far more often than a voice
    zcr = np.mean(np.diff(np.signbit(frames(x, 256)), axis=1), axis=1)
    assert zcr[noisy].mean() > 3 * zcr[voiced].mean()


# --- WAV folders -----------------------------------------------------------------------------------------


def test_folder_recursive_sorted_resampled_and_stereo(tmp_path: Path) -> None:
    write_wav(tmp_path / "b.wav", tone(3000), SR)
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    write_wav(tmp_path / "sub" / "deeper" / "c.WAV", np.stack([tone(2000), tone(2000)], axis=1), SR)
    write_wav(tmp_path / "a16k.wav", tone(16000, rate=16000), 16000)
    (tmp_path / "notes.txt").write_text("not audio")
    ds = WavFolderDataset(tmp_path, segment_length=SEG)
    assert [p.relative_to(tmp_path).as_posix() for p in ds.files] == ["a16k.wav", "b.wav", "sub/deeper/c.WAV"]
    assert ds.lengths.tolist() == [22050, 3000, 2000]  # 1 s at 16 kHz is 22050 samples at 22.05 kHz
    assert len(ds) == 22 + 3 + 2
    for k in range(len(ds)):
        item = ds[k]
        assert item.shape == (1, SEG) and item.dtype == torch.float32 and float(item.abs().max()) <= 0.95 + 1e-6
    assert ds.skip_counts == {"unreadable": 0, "silent": 0, "short": 0, "padded": 0}


def test_folder_windows_cover_every_sample_and_are_deterministic(tmp_path: Path) -> None:
    length = 3 * SEG + 500
    write_wav(tmp_path / "clip.wav", tone(length), SR)
    ds = WavFolderDataset(tmp_path, segment_length=SEG, seed=1)
    assert len(ds) == 4
    wave = read_wav(tmp_path / "clip.wav")
    gain = 0.95 / np.abs(wave).max()
    covered = np.zeros(length, bool)
    starts = []
    for k in range(len(ds)):
        clip, start = ds.window(k)
        assert clip == 0 and 0 <= start <= length - SEG
        covered[start:start + SEG] = True
        starts.append(start)
        np.testing.assert_allclose(ds[k][0].numpy(), wave[start:start + SEG] * gain, rtol=1e-6, atol=1e-7)
    assert covered.all()
    assert starts[0] == 0 and starts[-1] == length - SEG
    assert starts == [WavFolderDataset(tmp_path, segment_length=SEG, seed=1).window(k)[1] for k in range(4)]
    other = [WavFolderDataset(tmp_path, segment_length=SEG, seed=2).window(k)[1] for k in range(4)]
    assert other != starts  # the jitter depends on the seed


def test_short_clip_padded_or_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_wav(tmp_path / "long.wav", tone(2 * SEG), SR)
    write_wav(tmp_path / "short.wav", tone(300), SR)
    with caplog.at_level(logging.WARNING, logger="mmgan"):
        padded = WavFolderDataset(tmp_path, segment_length=SEG)
    assert padded.skip_counts["padded"] == 1 and len(padded) == 3
    item = padded[2][0].numpy()
    assert np.abs(item[:300]).max() > 0.5 and not item[300:].any()
    assert "zero-padded 1 shorter than 1024 samples (first: short.wav)" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mmgan"):
        skipped = WavFolderDataset(tmp_path, segment_length=SEG, short_clips="skip")
    assert skipped.skip_counts["short"] == 1 and len(skipped) == 2
    assert [s.path.name for s in skipped.skipped] == ["short.wav"]
    assert "skipped 1 shorter than 1024 samples (first: short.wav" in caplog.text
    with pytest.raises(ValueError, match="short_clips"):
        WavFolderDataset(tmp_path, segment_length=SEG, short_clips="drop")


def test_silent_corrupt_and_non_wav_skipped_with_one_warning(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    write_wav(tmp_path / "good.wav", tone(2 * SEG), SR)
    write_wav(tmp_path / "silent.wav", np.zeros(2 * SEG), SR)
    (tmp_path / "text.wav").write_text("this is not a wav file\n")
    write_wav(tmp_path / "whole.wav", tone(4 * SEG), SR)
    data = (tmp_path / "whole.wav").read_bytes()
    (tmp_path / "truncated.wav").write_bytes(data[: len(data) // 2])
    (tmp_path / "whole.wav").unlink()
    with caplog.at_level(logging.WARNING, logger="mmgan"):
        ds = WavFolderDataset(tmp_path, segment_length=SEG)
    assert [p.name for p in ds.files] == ["good.wav"]
    assert ds.skip_counts == {"unreadable": 2, "silent": 1, "short": 0, "padded": 0}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    line = warnings[0].getMessage()
    assert "\n" not in line and "skipped 2 unreadable (first: text.wav" in line
    assert "skipped 1 silent (first: silent.wav" in line and "1 of 4 files used" in line


def test_ljspeech_layout_reads_metadata(tmp_path: Path) -> None:
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    for name in ("LJ001-0002", "LJ001-0001", "stray"):
        write_wav(wavs / f"{name}.wav", tone(SEG + 10), SR)
    (tmp_path / "metadata.csv").write_text("LJ001-0002|Text two.|Text two.\nLJ001-0001|One|One\n\n")
    ds = WavFolderDataset(tmp_path, segment_length=SEG)
    assert [p.name for p in ds.files] == ["LJ001-0002.wav", "LJ001-0001.wav"]  # metadata order, no stray
    assert len(ds) == 4


def test_ljspeech_without_wavs_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "metadata.csv").write_text("LJ001-0001|a|a\n")
    with pytest.raises(DataError, match=f"LJSpeech folder {tmp_path} has metadata.csv but no wavs/ directory"):
        WavFolderDataset(tmp_path)


def test_bad_folders_are_one_line_errors_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"{tmp_path / 'missing'} does not exist"):
        WavFolderDataset(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=f"no .wav files .* in {empty}"):
        WavFolderDataset(empty)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="neither a folder nor a .wav file"):
        WavFolderDataset(tmp_path / "notes.txt")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.wav").write_bytes(b"RIFF")
    write_wav(bad / "b.wav", np.zeros(SEG), SR)
    with pytest.raises(DataError, match=f"none of the 2 WAV files in {bad} is usable") as err:
        WavFolderDataset(bad, segment_length=SEG)
    assert "\n" not in str(err.value)


def test_single_wav_file_source(tmp_path: Path) -> None:
    write_wav(tmp_path / "one.wav", tone(2 * SEG), SR)
    ds = WavFolderDataset(tmp_path / "one.wav", segment_length=SEG)
    assert len(ds) == 2 and ds[1].shape == (1, SEG)


def test_open_speech_source_routes(tmp_path: Path) -> None:
    assert isinstance(open_speech_source("builtin:speech", SEG, SR, 0), SpeechLikeDataset)
    with pytest.raises(DataError, match="valid: builtin:speech"):
        open_speech_source("builtin:music", SEG, SR, 0)
    write_wav(tmp_path / "a.wav", tone(300), SR)
    assert len(open_speech_source(str(tmp_path), SEG, SR, 0)) == 1
    with pytest.raises(DataError, match="shorter than 1024"):
        open_speech_source(str(tmp_path), SEG, SR, 0, short_clips="skip")


def _header_with_channels(path: Path, channels: int) -> Path:
    """A 16-bit WAV whose header claims ``channels`` channels (0 or 300: what scipy divided by zero on)."""
    import struct

    write_wav(path, np.zeros(2205), 22050)
    data = bytearray(path.read_bytes())
    data[22:24] = struct.pack("<H", channels)  # the fmt chunk's channel count
    path.write_bytes(bytes(data))
    return path


def test_float_clips_beyond_full_scale_are_counted_in_the_one_summary_warning(tmp_path, caplog):
    # faults row 82: clipped silently; read alone each is a warning (test_speech_audio), in a folder one in all
    folder = tmp_path / "wavs"
    folder.mkdir()
    x = tone(4096)
    write_wav(folder / "ok.wav", x, SR)
    for name, peak in (("a.wav", 1e6), ("b.wav", 3.0)):
        scipy.io.wavfile.write(folder / name, SR, (peak * x / np.abs(x).max()).astype(np.float32))
    with caplog.at_level(logging.WARNING):
        dataset = WavFolderDataset(folder, segment_length=SEG)
        items = [dataset[k] for k in range(len(dataset))]  # training reads them again: no warning either
    assert [r.getMessage() for r in caplog.records] == [
        f"WAV source {folder}: scaled 2 float clips beyond full scale down by their peak (first: a.wav: samples "
        "reach 1e+06, 120.0 dB beyond it); 3 of 3 files used"]
    assert [path.name for path, _ in dataset.scaled] == ["a.wav", "b.wav"] and len(dataset.files) == 3
    # the waveform kept: every clip peak-normalises to the same tone
    np.testing.assert_allclose(dataset.clip_wave(0), dataset.clip_wave(2), atol=1e-4)  # ok.wav is 16-bit
    assert all(float(item.abs().max()) <= 1.0 for item in items)


def test_a_wav_header_with_0_or_300_channels_is_skipped_and_counted_and_read_alone_is_one_line(tmp_path):
    # faults row 81: a ZeroDivisionError in training, data pack, vocode and report, naming no file
    folder = tmp_path / "wavs"
    folder.mkdir()
    for i in range(2):
        write_wav(folder / f"ok{i}.wav", 0.1 * np.sin(np.arange(22050) * 0.05), 22050)
    bad = [_header_with_channels(folder / f"bad{c}.wav", c) for c in (0, 300)]
    dataset = WavFolderDataset(folder, segment_length=2048)
    assert len(dataset.skipped) == 2 and len(dataset) > 0
    for path in bad:
        with pytest.raises(DataError, match=rf"{path.name}: corrupt WAV header"):
            read_wav(path)
