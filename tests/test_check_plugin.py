"""mmgan check-plugin: a healthy modality passes; a wrong shape is an error; a stuck D, a D overpowering G
and a generator whose samples barely vary are warnings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from conftest import TINY
from torch import nn

from mmgan.cli.check_plugin import check_plugin
from mmgan.contract.modality import Modality, ModalityConfig
from mmgan.contract.plugin import ModalityPlugin
from mmgan.testing import plugin_registered


@dataclass
class FlatConfig(ModalityConfig):
    # builtin:flat: random vectors
    data: str = "builtin:flat"
    # the head's output length (the data has 16)
    out: int = 16
    # discriminator: "mlp", or "blind" (ignores its input: D(x) = 0)
    disc: str = "mlp"
    # generator's head: "linear", "faint" (a thousandth of it: near-identical samples) or "offset" (3 more:
    # samples far from the data, which D tells apart within a few steps)
    gen: str = "linear"


class Blind(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, 0] * 0 + self.bias * 0


class Affine(nn.Module):
    def __init__(self, head: nn.Module, scale: float, shift: float) -> None:
        super().__init__()
        self.head, self.scale, self.shift = head, scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x) * self.scale + self.shift


class Flat(ModalityPlugin):
    modality = Modality(name="flat", config_class=FlatConfig,
                        sample_input=lambda n, c, g: torch.randn(n, 4, generator=g),
                        make_input=lambda real, c, g: torch.randn(real.shape[0], 4, generator=g))

    def build_generator(self, config, width):
        head = nn.Sequential(nn.Flatten(1), nn.Linear(width * 2, config.out))
        scale, shift = {"linear": (1.0, 0.0), "faint": (1e-3, 0.0), "offset": (1.0, 3.0)}[config.gen]
        return (nn.Sequential(nn.Linear(4, width * 2), nn.Unflatten(1, (width, 2))),
                head if config.gen == "linear" else Affine(head, scale, shift))

    def build_discriminator(self, config):
        return Blind() if config.disc == "blind" else nn.Sequential(nn.Linear(16, 32), nn.LeakyReLU(0.2),
                                                                     nn.Linear(32, 1), nn.Flatten(0))

    def read_data(self, source, config, seed):
        return torch.randn(256, 16, generator=torch.Generator().manual_seed(seed)) if source == "builtin:flat" else None

    def write_samples(self, samples, path, config, real):
        path = Path(path).with_suffix(".pt")
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(samples, path)
        return [path]


def test_the_image_modality_passes(tmp_path):
    report = check_plugin("image", TINY, steps=4, batch_size=4, workdir=tmp_path)
    assert not report.errors and not report.warnings, report.lines()
    assert any("every trained parameter" in line for line in report.passed)


def test_a_generator_of_the_wrong_shape_is_an_error(tmp_path):
    with plugin_registered(Flat(), name="flat"):
        report = check_plugin("flat", ["flat.out=15", "trunk.width=8"], steps=2, batch_size=4, workdir=tmp_path)
    assert any("shape (15,), the data has (16,)" in line for line in report.errors), report.lines()


def test_a_discriminator_stuck_at_chance_is_a_warning(tmp_path, cli_run):
    with plugin_registered(Flat(), name="flat"):
        report = check_plugin("flat", ["flat.disc=blind", "trunk.width=8"], steps=6, batch_size=4, workdir=tmp_path)
        assert not report.errors, report.lines()
        assert any("value for D(x) = 0" in line for line in report.warnings), report.lines()
        healthy = cli_run("check-plugin", "flat", "--set", "trunk.width=8", "--steps", "6")
    assert healthy.exit_code == 0, healthy.output
    assert "warning" not in healthy.output and "ok       discriminator learns" in healthy.output


def test_a_discriminator_overpowering_the_generator_is_a_warning(tmp_path):
    # G's samples sit 3 away from the data and D learns at 500 times the default rate: its loss falls to ~0.01
    with plugin_registered(Flat(), name="flat"):
        report = check_plugin("flat", ["flat.gen=offset", "flat.lr_d=0.1", "trunk.width=8"], steps=20, batch_size=8,
                              workdir=tmp_path)
    assert not report.errors, report.lines()
    assert any("D is overpowering G" in line and "flat.lr_d" in line for line in report.warnings), report.lines()
    assert not any("discriminator learns" in line for line in report.passed), report.lines()


def test_a_generator_whose_samples_barely_vary_is_a_warning(tmp_path):
    with plugin_registered(Flat(), name="flat"):
        report = check_plugin("flat", ["flat.gen=faint", "trunk.width=8"], steps=6, batch_size=8, workdir=tmp_path)
    assert not report.errors, report.lines()
    about_g = [line for line in report.warnings if "generator's samples" in line]
    assert len(about_g) == 1 and "vary far less than the data's" in about_g[0], report.lines()


def test_a_healthy_modality_gets_neither_new_warning(tmp_path):
    with plugin_registered(Flat(), name="flat"):
        report = check_plugin("flat", ["trunk.width=8"], steps=30, batch_size=8, workdir=tmp_path)
    assert not report.errors and not report.warnings, report.lines()
    assert any("discriminator learns" in line for line in report.passed), report.lines()
    assert any("generator samples vary" in line for line in report.passed), report.lines()


def test_a_discriminator_still_in_its_warm_up_is_a_warning_not_a_traceback(tmp_path):
    # speech's default warm-up (3500 steps of its reconstruction terms alone) is longer than the check
    settings = ["speech.segment_length=2048", "speech.mpd_channels=2", "speech.mrd_channels=2", "trunk.width=32",
                "trunk.depth=1", "train.mixed_precision=no"]
    report = check_plugin("speech", settings, steps=3, batch_size=2, workdir=tmp_path)
    assert not report.errors, report.errors
    assert any("did not train in the 3 checked steps" in w and "speech.adversarial_start=0" in w
               for w in report.warnings), report.warnings


def test_a_batch_of_one_is_refused_up_front_not_a_false_nan_warning(cli_run):
    # faults row 70: with batch 1 the sample spread was a std of nan, warned about as "do not vary"
    from conftest import assert_one_line_error

    assert_one_line_error(cli_run("check-plugin", "image", "--batch-size", "1"), "--batch-size", "at least 2")
