"""`mmgan export --format onnx`: the exported file runs under ONNX Runtime alone (numpy in, numpy out) and gives
what the PyTorch generator gives, at other batch sizes and lengths too; what cannot be exported is one line."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SPEECH_TINY, TINY_CORE, assert_one_line_error

from mmgan import config as cfg
from mmgan.contract.manager import get_modality
from mmgan.engine import Trainer
from mmgan.evaluation.inference import load_generator

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parent.parent


def numpy_vocoder():
    """examples/onnx/vocode.py, the numpy-and-onnxruntime front end of docs/deploy.md."""
    spec = importlib.util.spec_from_file_location("onnx_vocode", ROOT / "examples" / "onnx" / "vocode.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("onnx") / "image"
    Trainer(cfg.resolve(get_modality, plugins=["image"], out=run, steps=1, batch_size=4,
                        overrides=["image.image_size=32", "image.ngf=8", "image.ndf=8", "image.nz=16", *TINY_CORE]),
            progress=False).fit()
    return run


def speech_run(tmp_path: Path, *extra: str) -> Path:
    run = tmp_path / "speech"
    Trainer(cfg.resolve(get_modality, plugins=["speech"], out=run, steps=1, batch_size=2,
                        overrides=[*TINY_CORE, *SPEECH_TINY, *extra]), progress=False).fit()
    return run


def metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


@pytest.mark.slow
def test_an_image_export_runs_under_onnx_runtime_alone_and_matches_pytorch(cli_run, image_run, tmp_path):
    out = tmp_path / "image.onnx"
    result = cli_run("export", image_run, "--format", "onnx", "-o", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: image input [2, 16] -> output [2, 3, 32, 32] (dynamic axes 0: batch)" in result.output
    facts = metadata(out)
    assert facts["modality"] == "image" and json.loads(facts["config"])["image_size"] == 32
    assert json.loads(facts["dynamic_axes"]) == {"0": "batch"} and facts["export"] == "best"
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    noise = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)  # a batch size not exported
    got = session.run(None, {"input": noise})[0]
    generator, _ = load_generator(image_run, "image")
    with torch.no_grad():
        expected = generator("image", torch.from_numpy(noise)).numpy()
    assert got.shape == (5, 3, 32, 32)
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())
    # docs/deploy.md's function, as written there
    block = (ROOT / "docs" / "deploy.md").read_text().split("```python\n")[1].split("```")[0]
    namespace: dict = {}
    exec(block, namespace)  # noqa: S102 - the docs' own code
    pixels = namespace["generate_images"](str(out), n=4)
    assert pixels.shape == (4, 32, 32, 3) and pixels.dtype == np.uint8 and pixels.std() > 0


@pytest.mark.slow
def test_a_melgan_vocoder_exports_with_free_length_and_runs_with_numpy_alone(cli_run, tmp_path):
    run = speech_run(tmp_path)
    out = tmp_path / "vocoder.onnx"
    result = cli_run("export", run, "-o", out)
    assert result.exit_code == 0, result.output
    assert "dynamic axes 0: batch, 2: frames" in result.output
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    mel = np.random.default_rng(1).normal(-5, 2, (1, 80, 13)).astype(np.float32)  # 13 frames: not exported
    wave = session.run(None, {"input": mel})[0]
    generator, config = load_generator(run, "speech")
    with torch.no_grad():
        expected = generator("speech", torch.from_numpy(mel)).numpy()
    assert wave.shape == expected.shape == (1, 1, 13 * 256)
    np.testing.assert_allclose(wave, expected, atol=1e-4 * np.abs(expected).max())
    facts = metadata(out)
    assert json.loads(facts["sample_rate"]) == 22050 and json.loads(facts["mel"])["n_mels"] == 80
    assert json.loads(facts["config"])["segment_length"] == config.segment_length
    # the numpy front end and onnxruntime alone, from a WAV file to a WAV file
    from mmgan_speech.audio import read_wav, write_wav

    write_wav(tmp_path / "in.wav", 0.3 * np.sin(np.arange(5000) * 0.07), 22050)
    numpy_vocoder().vocode(str(out), str(tmp_path / "in.wav"), str(tmp_path / "out.wav"))
    assert read_wav(tmp_path / "out.wav").shape == ((5000 // 256) * 256,)


@pytest.mark.slow
def test_a_vocos_vocoder_exports_its_inverse_stft_and_phase_projections_in_real_arithmetic(cli_run, tmp_path):
    # the default head: phase advance, magnitude prior and 16 phase projections, trained a few steps so its
    # phase layer is not the zero it starts at
    run = speech_run(tmp_path, "speech.generator=vocos", "speech.phase_iterations_start=0",
                     "speech.train_phase_iterations=1")
    out = tmp_path / "vocos.onnx"
    result = cli_run("export", run, "-o", out)
    assert result.exit_code == 0, result.output
    facts = metadata(out)
    assert json.loads(facts["config"])["generator"] == "vocos" and json.loads(facts["config"])["phase_iterations"] == 16
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    generator, _ = load_generator(run, "speech")
    for frames in (13, 50):  # lengths not exported, one not a multiple of the phase period
        mel = np.random.default_rng(frames).normal(-5, 2, (2, 80, frames)).astype(np.float32)
        wave = session.run(None, {"input": mel})[0]
        with torch.no_grad():
            expected = generator("speech", torch.from_numpy(mel)).numpy()
        assert wave.shape == expected.shape == (2, 1, frames * 256)
        np.testing.assert_allclose(wave, expected, atol=1e-3 * np.abs(expected).max())


def test_export_mistakes_are_one_line_and_write_nothing(cli_run, image_run, tmp_path, monkeypatch):
    assert_one_line_error(cli_run("export", tmp_path, "-o", tmp_path / "x.onnx"), "has no exported generator")
    assert_one_line_error(cli_run("export", image_run, "-o", tmp_path), "is a directory")
    assert_one_line_error(cli_run("export", image_run, "-o", image_run / "config.toml"),
                          "is one of the run's own files")
    assert_one_line_error(cli_run("export", image_run, "--modality", "speech", "-o", tmp_path / "x.onnx"),
                          "has no exported 'speech' generator")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert_one_line_error(cli_run("export", image_run, "-o", tmp_path / "x.onnx"),
                          "--format onnx needs onnxruntime: pip install 'mmgan[onnx]'")
    assert not (tmp_path / "x.onnx").exists()


def test_the_numpy_mel_front_end_computes_the_vocoder_s_mel():
    """docs/deploy.md's front end (numpy alone) against the speech plugin's mel_spectrogram, on speech-like input."""
    from dataclasses import asdict

    from mmgan_speech.mel import MelConfig, mel_spectrogram

    rng = np.random.default_rng(0)
    samples = (0.4 * np.sin(np.arange(22050) * 2 * np.pi * 220 / 22050) + 0.05 * rng.standard_normal(22050))
    ours = numpy_vocoder().log_mel(samples.astype(np.float32), asdict(MelConfig()))
    theirs = mel_spectrogram(torch.from_numpy(samples.astype(np.float32))).numpy()
    assert ours.shape == theirs.shape == (80, 22050 // 256)
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
