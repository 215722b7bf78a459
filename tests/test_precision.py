"""train.mixed_precision=auto: bf16 only where it is native and every modality of the run allows it."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import torch

from mmgan.contract.manager import get_modality
from mmgan.engine import Trainer
from mmgan.engine.precision import cpu_flags, native_bf16, resolve_precision

CPU = torch.device("cpu")
NATIVE = {"fpu", "avx512f", "avx512_bf16"}
EMULATED = {"fpu", "avx512f", "avx2"}


@pytest.fixture
def image():
    return get_modality("image")


def test_auto_picks_bf16_only_where_native_and_allowed(image):
    safe = replace(image, bf16=True)
    assert resolve_precision("auto", [safe], CPU, env={}, flags=NATIVE)[0] == "bf16"
    assert resolve_precision("auto", [safe], CPU, env={}, flags={"amx_bf16"})[0] == "bf16"
    assert resolve_precision("auto", [safe], CPU, env={}, flags={"asimd", "bf16"})[0] == "bf16"  # Arm
    # emulated bf16 is many times slower than fp32: never chosen
    precision, why = resolve_precision("auto", [safe], CPU, env={}, flags=EMULATED)
    assert precision == "no" and "no native bf16" in why
    # one modality not measured in bf16 keeps the whole run in fp32, and the reason names it
    unsafe = replace(image, name="other", bf16=False)
    precision, why = resolve_precision("auto", [safe, unsafe], CPU, env={}, flags=NATIVE)
    assert precision == "no" and "other" in why


def test_explicit_settings_win_over_auto(image):
    safe = replace(image, bf16=True)
    for setting in ("no", "bf16", "fp16"):
        assert resolve_precision(setting, [safe], CPU, env={}, flags=EMULATED)[0] == setting
    # accelerate launch --mixed_precision X arrives as ACCELERATE_MIXED_PRECISION: Accelerate decides
    assert resolve_precision("auto", [safe], CPU, env={"ACCELERATE_MIXED_PRECISION": "no"}, flags=NATIVE)[0] is None
    # "" (configs from before auto) keeps leaving it to Accelerate
    assert resolve_precision("", [safe], CPU, env={}, flags=NATIVE)[0] is None
    with pytest.raises(ValueError, match="fp8"):
        resolve_precision("fp8", [safe], CPU, env={})


def test_cpu_flags_read_x86_and_arm_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    assert {"avx512_bf16", "fpu"} <= cpu_flags(x86)
    assert native_bf16(CPU, cpu_flags(arm))
    assert cpu_flags(tmp_path / "missing") == frozenset()
    assert not native_bf16(CPU, cpu_flags(tmp_path / "missing"))


def test_a_run_logs_and_uses_the_resolved_precision(tiny_config, tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    config = tiny_config(tmp_path / "run", steps=1, extra=("train.mixed_precision=auto",))
    # the toy and image modalities' declarations decide; here: image not declared bf16-safe on this host
    monkeypatch.setattr("mmgan.engine.precision.native_bf16", lambda device, flags=None: True)
    monkeypatch.setattr("mmgan.engine.trainer.get_modality",
                        lambda name, pm=None: replace(get_modality(name, pm), bf16=False))
    with caplog.at_level(logging.INFO, logger="mmgan"):
        trainer = Trainer(config, progress=False)
    assert trainer.accelerator.mixed_precision == "no"
    assert "image not measured in bf16" in caplog.text
    monkeypatch.setattr("mmgan.engine.trainer.get_modality",
                        lambda name, pm=None: replace(get_modality(name, pm), bf16=True))
    trainer = Trainer(tiny_config(tmp_path / "run2", steps=1, extra=("train.mixed_precision=auto",)), progress=False)
    assert trainer.accelerator.mixed_precision == "bf16"
