"""Shared fixtures: tiny run configs and a CLI runner, so every test trains for real in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mmgan import config as cfg
from mmgan.cli.commands import build_cli
from mmgan.contract.manager import get_modality

# DCGAN at 32x32 with narrow layers and a narrow trunk: the real networks, sized for a CPU test.
# fp32 pinned: with train.mixed_precision=auto an image run would train in bf16 on hosts with native bf16
# and in fp32 elsewhere, and the suite must mean the same on every host (tests/test_precision.py tests auto)
TINY_CORE = ["trunk.width=32", "trunk.depth=1", "train.log_every=1", "train.num_samples=16", "train.eval_every=0",
             "train.mixed_precision=no"]
TINY = ["image.image_size=32", "image.ngf=8", "image.ndf=8", "image.nz=16", *TINY_CORE]
# MelGAN (the paper's network, no longer the speech default) at tiny sizes: the tests written for it
# (MelGAN's recipe: D from the first step, no MR-STFT loss)
SPEECH_TINY = ["speech.generator=melgan", "speech.segment_length=2048", "speech.ngf=4", "speech.ndf=4",
               "speech.disc_channels=32", "speech.adversarial_start=0", "speech.stft_weight=0"]


def tiny_args(out: Path, steps: int = 3, batch_size: int = 8, extra: tuple[str, ...] = ()) -> list[str]:
    args = ["--out", str(out), "--steps", str(steps), "--batch-size", str(batch_size), "--no-progress"]
    for item in (*TINY, *extra):
        args += ["--set", item]
    return args


@pytest.fixture
def tiny_config():
    def make(out: Path, steps: int = 3, plugins: tuple[str, ...] = ("image",), extra: tuple[str, ...] = (),
             **kwargs) -> cfg.RunConfig:
        return cfg.resolve(get_modality, plugins=plugins, out=out, steps=steps, batch_size=kwargs.pop("batch_size", 8),
                           overrides=[*TINY, *extra], **kwargs)
    return make


@pytest.fixture
def cli_run():
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(build_cli(), [str(a) for a in args], catch_exceptions=False)
    return invoke


# the logged timings (steps/s, seconds in training steps): measurements, not results a resume must repeat
TIMING_KEYS = ("steps_per_s", "train_s", "train_cpu_s")


def read_metrics(run_dir: Path, timing: bool = False) -> list[dict]:
    """metrics.jsonl's records, without the timings unless ``timing``."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    if timing:
        return records
    return [{k: v for k, v in record.items() if k not in TIMING_KEYS} for record in records]


def assert_one_line_error(result: Result, *fragments: str) -> None:
    """A user mistake: non-zero exit, one line starting with Error:, naming what is wrong, no traceback."""
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    error_lines = [line for line in lines if line.startswith("Error:")]
    assert len(error_lines) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in error_lines[0], (fragment, error_lines[0])
