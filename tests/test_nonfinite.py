"""A run whose losses or weights become non-finite stops at that step with one line naming the modality and the
loss term, and writes nothing from that state: its finite checkpoints and exports stay (faults rows 72, 73)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from conftest import assert_one_line_error, tiny_args
from torch import nn

from mmgan.api import Modality, ModalityConfig, ModalityPlugin, engine_default
from mmgan.engine.finite import nonfinite_losses, nonfinite_weights
from mmgan.testing import plugin_registered


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_diverging_resume_stops_and_keeps_the_finite_checkpoints_and_export(cli_run, tmp_path):
    run = tmp_path / "run"
    args = tiny_args(run, steps=4, extra=("train.checkpoint_every=2", "train.keep_checkpoints=2"))
    assert cli_run("run", "--plugin", "image", *args).exit_code == 0
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    export = {p.name: _digest(p) for p in (run / "export").glob("*.safetensors")}
    result = cli_run("run", "--resume", run, "--steps", "12", "--set", "train.lr_d=1e30", "--set", "train.lr_g=1e30")
    assert_one_line_error(result, "image/", "not finite", "finite checkpoint of step 4", "--resume")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before  # none rotated out, none added
    assert {p.name: _digest(p) for p in (run / "export").glob("*.safetensors")} == export


@dataclass
class NanConfig(ModalityConfig):
    # builtin:points: random 2-D points
    data: str = engine_default("builtin:points")
    # the step from which the generator's head emits NaN
    nan_from: int = 2


class NanHead(nn.Module):
    """A plugin's bug: from ``nan_from`` training steps on, its samples are NaN."""

    def __init__(self, width: int, nan_from: int) -> None:
        super().__init__()
        self.out, self.nan_from, self.step = nn.Linear(width, 2), nan_from, 0

    def at_training_step(self, step: int) -> None:
        self.step = step

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.out(tokens.mean(-1))
        return out * float("nan") if self.step >= self.nan_from else out


class Stem(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.proj, self.width = nn.Linear(4, width * 2), width

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.proj(z).view(z.shape[0], self.width, 2)


class NanPlugin(ModalityPlugin):
    modality = Modality(name="nanpts", config_class=NanConfig,
                        make_input=lambda real, c, g: torch.randn(real.shape[0], 4, generator=g),
                        sample_input=lambda n, c, g: torch.randn(n, 4, generator=g))

    def build_generator(self, config, width):
        return Stem(width), NanHead(width, config.nan_from)

    def build_discriminator(self, config):
        return nn.Sequential(nn.Linear(2, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))

    def read_data(self, source, config, seed):
        if source == "builtin:points":
            return torch.randn(64, 2, generator=torch.Generator().manual_seed(seed))
        return None

    def write_samples(self, samples, path, config, real):
        path = path.with_suffix(".txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(samples.tolist()))
        return [path]


def test_a_generator_that_emits_nan_stops_the_run_at_that_step_and_exports_nothing(cli_run, tmp_path):
    run = tmp_path / "run"
    with plugin_registered(NanPlugin(), name="nanpts"):
        result = cli_run("run", "--plugin", "nanpts", "--out", run, "--steps", "30", "--batch-size", "8",
                         "--no-progress", "--set", "trunk.width=8", "--set", "trunk.depth=1",
                         "--set", "train.checkpoint_every=2", "--set", "train.sample_every=2",
                         "--set", "train.mixed_precision=no")
    # step 3 (1-based) is the first whose fakes are NaN: the D loss of that step names the modality and term
    assert_one_line_error(result, "step 3:", "nanpts/d/adv", "not finite", "finite checkpoint of step 2")
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_000002"]
    assert sorted(p.name for p in (run / "samples" / "nanpts").iterdir()) == ["step_000002.txt"]
    export = run / "export" / "nanpts.safetensors"
    from safetensors.torch import load_file
    assert all(torch.isfinite(t).all() for t in load_file(str(export)).values())


def test_the_checks_name_what_is_not_finite():
    losses = {"image/d/adv": torch.tensor(0.7), "image/g/adv": torch.tensor(float("inf")),
              "speech/g/mel": torch.tensor(float("nan"))}
    assert nonfinite_losses(losses) == ["image/g/adv", "speech/g/mel"]
    good, bad = nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():
        bad.bias[1] = float("nan")
    assert nonfinite_weights({"generator": good, "discriminator": bad}) == ["discriminator.bias"]
