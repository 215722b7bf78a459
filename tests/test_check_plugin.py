"""mmgan check-plugin: a healthy modality passes; a wrong shape is an error; a stuck D is a warning."""

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


class Blind(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, 0] * 0 + self.bias * 0


class Flat(ModalityPlugin):
    modality = Modality(name="flat", config_class=FlatConfig,
                        sample_input=lambda n, c, g: torch.randn(n, 4, generator=g),
                        make_input=lambda real, c, g: torch.randn(real.shape[0], 4, generator=g))

    def build_generator(self, config, width):
        return (nn.Sequential(nn.Linear(4, width * 2), nn.Unflatten(1, (width, 2))),
                nn.Sequential(nn.Flatten(1), nn.Linear(width * 2, config.out)))

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
