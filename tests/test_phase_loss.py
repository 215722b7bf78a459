"""The speech plugin's phase-derivative loss: it compares how the phase moves (along time and frequency),
not where it starts, it gives a finite gradient on any wave, and a phase can be learnt from it."""

from __future__ import annotations

import math

import torch
from conftest import TINY_CORE, assert_one_line_error, read_metrics

from mmgan_speech.losses import phase_derivative_loss
from mmgan_speech.speech_like import SpeechLikeDataset
from mmgan_speech.vocos import InverseSTFT, frame_spectrum


def speech(seconds: float = 0.75, seed: int = 0) -> torch.Tensor:
    wave = SpeechLikeDataset(seed=seed).clip(0, seconds).float()
    return wave[:, : wave.shape[-1] // 256 * 256]


def with_phase(magnitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    return InverseSTFT()(torch.polar(magnitude, phase))


def test_the_loss_ignores_the_absolute_phase_and_punishes_a_wrong_one():
    real = speech()
    spec = frame_spectrum(real)
    same, negated = phase_derivative_loss(real, real), phase_derivative_loss(-real, real)
    # a constant phase offset (every bin turned by 1 radian) moves no phase step
    turned = phase_derivative_loss(with_phase(spec.abs(), spec.angle() + 1.0), real)
    scrambled = phase_derivative_loss(with_phase(spec.abs(), torch.rand(spec.shape, generator=torch.Generator()
                                                                        .manual_seed(0)) * 2 * math.pi), real)
    assert same < 0.01 and abs(negated - same) < 1e-4 and turned < 0.05, (same, negated, turned)
    assert scrambled > 0.3, scrambled  # the true magnitude with a random phase


def test_the_loss_does_not_depend_on_the_fake_s_gain():
    real = speech()
    spec = frame_spectrum(real)
    wrong = with_phase(spec.abs(), torch.rand(spec.shape, generator=torch.Generator().manual_seed(4)) * 6)
    for fake in (real, wrong):
        values = [phase_derivative_loss(gain * fake, real).item() for gain in (1e-3, 1.0, 30.0)]
        assert max(values) - min(values) < 1e-4, values


def test_the_gradient_is_finite_on_silence_and_on_noise():
    real = speech()
    noise = 0.1 * torch.randn(real.shape, generator=torch.Generator().manual_seed(1))
    grads = []
    for fake in (torch.zeros_like(real), 1e-6 * noise, noise):
        fake.requires_grad_(True)
        loss = phase_derivative_loss(fake, real)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(fake.grad).all()
        grads.append(fake.grad)
    # the loss sees only the fake's shape: a quiet fake's gradient is the loud one's times the gain ratio
    assert (grads[1] * 1e-6 - grads[2]).norm() <= 1e-3 * grads[2].norm()


def test_a_phase_can_be_learnt_from_it():
    real = speech(seed=3)
    magnitude = frame_spectrum(real).abs()
    phase = (torch.rand(magnitude.shape, generator=torch.Generator().manual_seed(2)) * 2 * math.pi).requires_grad_(True)
    optimizer = torch.optim.Adam([phase], lr=0.05)
    start = phase_derivative_loss(with_phase(magnitude, phase.detach()), real).item()
    for _ in range(150):
        optimizer.zero_grad()
        loss = phase_derivative_loss(with_phase(magnitude, phase), real)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * start, (start, loss.item())


def test_phase_weight_adds_a_reconstruction_term_and_bad_values_are_one_line(tmp_path, cli_run):
    args = ["run", "--plugin", "speech", "--steps", "2", "--batch-size", "2", "--no-progress"]
    tiny = [*TINY_CORE, "speech.segment_length=2048", "speech.mpd_channels=2", "speech.mrd_channels=2",
            "speech.adversarial_start=2", "speech.phase_weight=2"]
    sets = [a for item in tiny for a in ("--set", item)]
    result = cli_run(*args, "--out", str(tmp_path / "run"), *sets)
    assert result.exit_code == 0, result.output
    assert all(r["speech/g/phase"] > 0 for r in read_metrics(tmp_path / "run") if "speech/g/mel" in r)
    bad = cli_run(*args, "--out", str(tmp_path / "bad"), *sets, "--set", "speech.phase_weight=-1")
    assert_one_line_error(bad, "[speech]", "phase_weight must be >= 0, got -1")
