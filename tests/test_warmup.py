"""<modality>.adversarial_start (a reconstruction warm-up) and <modality>.lr_schedule, for every modality."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from conftest import SPEECH_TINY, TINY_CORE, assert_one_line_error, read_metrics, tiny_args

from mmgan import config as cfg
from mmgan.config.schedule import multiplier
from mmgan.contract.manager import get_modality
from mmgan.engine import Trainer


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_d_is_untouched_before_adversarial_start_and_trained_after(tmp_path):
    config = cfg.resolve(get_modality, plugins=("speech",), out=tmp_path / "run", steps=4, batch_size=4,
                         overrides=[*TINY_CORE, *SPEECH_TINY, "speech.adversarial_start=2"])
    trainer = Trainer(config, progress=False)
    batches = trainer.batches()
    d0, g0 = snapshot(trainer.D_module), snapshot(trainer.G)
    seen = []
    for _ in range(2):
        seen.append(trainer.train_step(batches))
        trainer.step += 1
    assert same(snapshot(trainer.D_module), d0)  # neither run nor updated
    assert not same(snapshot(trainer.G), g0)  # G learned from its reconstruction term
    assert all(set(losses) == {"speech/g/mel"} for losses in seen)  # no adversarial term, no feature matching
    losses = trainer.train_step(batches)
    assert not same(snapshot(trainer.D_module), d0)
    assert {"speech/d/adv", "speech/g/adv", "speech/g/fm", "speech/g/mel"} <= set(losses)


def test_a_modality_without_reconstruction_terms_cannot_warm_up(cli_run, tmp_path):
    assert_one_line_error(cli_run("run", "--plugin", "image", *tiny_args(tmp_path / "run", steps=2),
                                  "--set", "image.adversarial_start=1"),
                          "image.adversarial_start=1", "no plugin gives image a reconstruction loss term")


def test_resume_across_the_adversarial_start_is_exact(cli_run, tmp_path):
    settings = [a for s in (*SPEECH_TINY, "speech.adversarial_start=2", "speech.lr_schedule=cosine",
                            "speech.lr_warmup=1", "speech.lr_floor=0.1") for a in ("--set", s)]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    core = [a for s in TINY_CORE for a in ("--set", s)]
    for run, steps in ((whole, 4), (broken, 1)):
        result = cli_run("run", "--plugin", "speech", "--out", run, "--steps", steps, "--batch-size", 4,
                         "--no-progress", *core, *settings)
        assert result.exit_code == 0, result.output
    result = cli_run("run", "--resume", broken, "--steps", "4")
    assert result.exit_code == 0, result.output

    def losses(run):
        return [{k: v for k, v in r.items() if "/" in k} for r in read_metrics(run)]

    assert losses(broken) == losses(whole)
    assert "speech/d/adv" not in losses(whole)[1] and "speech/d/adv" in losses(whole)[2]


def schedule(kind: str, warmup: int = 0, floor: float = 0.0) -> SimpleNamespace:
    return SimpleNamespace(lr_schedule=kind, lr_warmup=warmup, lr_floor=floor, adversarial_start=0)


def test_schedules_are_the_documented_curves():
    assert [multiplier(schedule("constant", warmup=4), s, 100) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    cos = schedule("cosine", floor=0.1)
    assert multiplier(cos, 0, 100) == 1.0 and multiplier(cos, 100, 100) == pytest.approx(0.1)
    assert multiplier(cos, 50, 100) == pytest.approx(0.55)
    exp = schedule("exponential", floor=0.01)
    assert multiplier(exp, 50, 100) == pytest.approx(0.1) and multiplier(exp, 100, 100) == pytest.approx(0.01)
    warm_cos = schedule("cosine", warmup=10)
    assert multiplier(warm_cos, 9, 110) == 1.0 and multiplier(warm_cos, 60, 110) == pytest.approx(0.5)


def test_the_optimizers_follow_each_modalitys_schedule(tiny_config, tmp_path):
    config = tiny_config(tmp_path / "run", steps=10, extra=("image.lr_schedule=cosine", "trunk.lr_scale=0.5"))
    trainer = Trainer(config, progress=False)
    batches = trainer.batches()
    for _ in range(5):
        trainer.train_step(batches)
        trainer.step += 1
    expected = 2e-4 * 0.5 * (1 + math.cos(math.pi * 4 / 10))  # the factor of step 4, the last one taken
    groups = {(g["mmgan_group"], g["base_lr"]): g["lr"] for g in trainer.opt_g.param_groups}
    assert groups[("image", 2e-4)] == pytest.approx(expected)
    assert groups[("trunk", 1e-4)] == pytest.approx(expected / 2)
    assert [g["lr"] for g in trainer.opt_d.param_groups] == [pytest.approx(expected)]


def test_bad_schedule_settings_are_one_line(cli_run, tmp_path):
    for setting, message in (("image.lr_schedule=linear", "image.lr_schedule must be one of constant, cosine"),
                             ("image.lr_floor=2", "image.lr_floor must be in [0, 1]"),
                             ("image.adversarial_start=-1", "image.adversarial_start must be >= 0")):
        assert_one_line_error(cli_run("run", "--plugin", "image", *tiny_args(tmp_path / "r"), "--set", setting),
                              message)
