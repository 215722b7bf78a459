"""Known answers of the speech metrics, and the speech plugin's answer to the metric hook."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import scipy.signal
import torch
from conftest import TINY_CORE, assert_one_line_error, read_metrics

from mmgan import config as cfg
from mmgan.contract.manager import get_modality, get_plugin_manager
from mmgan.engine import build_generators
from mmgan.errors import DataError, MetricError
from mmgan.evaluation.scoring import EvalContext, ModalityGenerator, context_for_run, evaluate
from mmgan_speech import metrics
from mmgan_speech.audio import write_wav
from mmgan_speech.datasets import SpeechLikeDataset
from mmgan_speech.metrics import mel_cepstral_distortion, mel_l1, mrstft, speech_metrics

SR = 22050
DISTANCES = {"mel_l1": mel_l1, "mrstft": mrstft, "mcd_db": mel_cepstral_distortion}


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return SpeechLikeDataset(seed=7).clip(0, 1.0).reshape(-1).double().numpy()


def add_noise(x: np.ndarray, snr_db: float) -> np.ndarray:
    noise = np.random.default_rng(0).standard_normal(x.size)
    return x + noise * np.sqrt(np.mean(x**2) / 10 ** (snr_db / 10))


def low_pass(x: np.ndarray, cutoff_hz: float) -> np.ndarray:
    return scipy.signal.sosfiltfilt(scipy.signal.butter(4, cutoff_hz, fs=SR, output="sos"), x)


def delay(x: np.ndarray, samples: int) -> np.ndarray:
    return np.concatenate([np.zeros(samples), x[:-samples]])


def test_identical_clips_are_at_distance_zero(clip):
    for name, distance in DISTANCES.items():
        assert distance(clip, clip.copy()) == 0.0, name


@pytest.mark.parametrize("degrade, levels", [
    (add_noise, (40.0, 20.0, 10.0, 0.0)),  # SNR in dB, falling
    (low_pass, (6000.0, 3000.0, 1500.0, 700.0)),  # cutoff in Hz, falling: more blur
    (delay, (16, 64, 256, 1024)),  # a time shift growing from 0.7 to 46 ms
], ids=["noise", "blur", "shift"])
def test_every_distance_grows_with_the_degradation(clip, degrade, levels):
    for name, distance in DISTANCES.items():
        values = [distance(degrade(clip, level), clip) for level in levels]
        assert values[0] > 0.0, name
        assert all(a < b for a, b in zip(values, values[1:], strict=False)), (name, values)


def test_mcd_leaves_out_silent_reference_frames(clip):
    reference = clip.copy()
    reference[SR // 2:] = 0.0  # the second half silent
    generated = reference.copy()
    generated[SR // 2 + 2048:] = 1e-4 * np.random.default_rng(1).standard_normal(SR // 2 - 2048)
    assert mel_l1(generated, reference) > 0.5  # the mel sees the hiss in the silence
    assert mel_cepstral_distortion(generated, reference) == pytest.approx(0.0, abs=1e-6)


def test_lengths_are_trimmed_to_the_shorter(clip):
    # a MelGAN output is frames * hop samples: up to hop - 1 shorter than its reference
    assert speech_metrics(clip[:-200], clip, SR, SR)["mel_l1"] == 0.0


def test_different_sample_rates_are_one_line_naming_both(clip):
    with pytest.raises(DataError) as info:
        speech_metrics(clip, clip, 16000, SR)
    message = str(info.value)
    assert "16000 Hz" in message and "22050 Hz" in message and "\n" not in message
    with pytest.raises(DataError, match="44100 Hz.*22050 Hz"):
        speech_metrics(clip, clip, 44100, 44100)  # both at a rate the mel is not defined at


def test_pesq_and_stoi_of_a_clip_against_itself_are_the_maximum(clip):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    assert metrics.pesq_wb(clip, clip, SR) == pytest.approx(4.644, abs=0.01)
    assert metrics.stoi(clip, clip, SR) == pytest.approx(1.0, abs=1e-6)
    noisy = [metrics.pesq_wb(add_noise(clip, snr), clip, SR) for snr in (40.0, 20.0, 0.0)]
    assert noisy[0] > noisy[1] > noisy[2]


def test_without_the_extra_pesq_and_stoi_are_left_out_with_a_message(clip, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("pesq", "pystoi") else real_find_spec(name, *a))
    assert set(speech_metrics(clip, clip, SR, SR)) == {"mel_l1", "mrstft", "mcd_db"}
    message = metrics.missing_optional_message()
    assert "pip install 'mmgan[audio-metrics]'" in message and "\n" not in message


@pytest.fixture(scope="module")
def tiny_vocoder() -> tuple[ModalityGenerator, object]:
    pm = get_plugin_manager()
    run_config = cfg.resolve(get_modality, plugins=("speech",), overrides=[*TINY_CORE, "speech.ngf=4"])
    torch.manual_seed(0)
    return ModalityGenerator(build_generators(pm, run_config), "speech").eval(), run_config.modalities["speech"]


def context(tiny_vocoder, data: str, n: int = 2) -> EvalContext:
    generator, config = tiny_vocoder
    return EvalContext(modality=get_modality("speech"), config=config, generator=generator, data=data,
                       num_samples=n, seed=3, options={"speech_clip_seconds": 0.5})


def test_the_hook_reports_every_metric_on_held_out_builtin_clips(tiny_vocoder):
    results = evaluate(context(tiny_vocoder, "builtin:speech"))
    expected = {"mel_l1", "mrstft", "mcd_db"}
    if importlib.util.find_spec("pesq") and importlib.util.find_spec("pystoi"):
        expected |= {"pesq_wb", "stoi"}
    assert set(results) == expected
    assert all(np.isfinite(v) for k, v in results.items() if k != "pesq_wb")
    assert results["mel_l1"] > 0.0


def test_the_hook_reads_whole_wav_files_and_skips_silent_ones(tiny_vocoder, tmp_path):
    speech = SpeechLikeDataset(seed=5)
    write_wav(tmp_path / "a.wav", speech.clip(0, 0.4).reshape(-1).numpy(), SR)
    resampled = scipy.signal.resample_poly(speech.clip(1, 0.4).reshape(-1).numpy(), 320, 441)
    write_wav(tmp_path / "b.wav", resampled, 16000)  # read at 22050 Hz, as training reads it
    write_wav(tmp_path / "silent.wav", np.zeros(8000), SR)
    assert len(list(metrics.held_out_clips(str(tmp_path), 10))) == 2
    assert "mel_l1" in evaluate(context(tiny_vocoder, str(tmp_path), n=5))
    (tmp_path / "a.wav").unlink()
    (tmp_path / "b.wav").unlink()
    with pytest.raises(MetricError, match="no usable clip"):
        evaluate(context(tiny_vocoder, str(tmp_path)))


def test_the_hook_reads_whole_clips_from_speech_shards(tiny_vocoder, tmp_path):
    from mmgan.data.shards import pack
    from mmgan_speech.shards import SpeechCodec

    speech = SpeechLikeDataset(seed=5)
    (tmp_path / "wavs").mkdir()
    for i in range(3):
        write_wav(tmp_path / "wavs" / f"{i}.wav", speech.clip(i, 0.3 + 0.1 * i).reshape(-1).numpy(), SR)
    pack(SpeechCodec(2048, SR), "speech", str(tmp_path / "wavs"), tmp_path / "sp", shard_size=2, progress=False)
    clips = list(metrics.held_out_clips(str(tmp_path / "sp"), 10))
    assert sorted(len(c) for c in clips) == [round(s * SR) for s in (0.3, 0.4, 0.5)]  # whole, not cropped
    assert "mel_l1" in evaluate(context(tiny_vocoder, str(tmp_path / "sp"), n=2))


def test_periodic_evaluation_and_mmgan_eval_report_the_speech_metrics(tmp_path, cli_run):
    run = tmp_path / "run"
    args = ["run", "--plugin", "speech", "--out", run, "--steps", "2", "--batch-size", "2", "--no-progress"]
    for item in (*TINY_CORE, "speech.segment_length=2048", "speech.ngf=4", "speech.ndf=4", "speech.disc_channels=32",
                 "train.eval_every=2", "train.eval_samples=1", "speech.eval_samples=1"):
        args += ["--set", item]
    assert cli_run(*args).exit_code == 0
    logged = [r for r in read_metrics(run) if "speech/eval/mel_l1" in r]
    assert [r["step"] for r in logged] == [2]
    assert {"speech/eval/mrstft", "speech/eval/mcd_db"} <= set(logged[0])

    # without -n a speech evaluation takes the modality's 32 clips, not the 5000 images an image one takes, nor
    # the size the run evaluated at while training (a run of several modalities writes speech.eval_samples)
    assert context_for_run(run).num_samples == 32

    result = cli_run("eval", run, "-n", "1", "--seed", "1", "--out", tmp_path / "eval.json")
    assert result.exit_code == 0, result.output
    assert "mel_l1" in result.output and "mcd_db" in result.output
    assert_one_line_error(cli_run("eval", run, "-n", "1", "--data", tmp_path / "missing"), "missing", "does not exist")
