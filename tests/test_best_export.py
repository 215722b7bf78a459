"""Best checkpoint by metric: a run keeps the export that scored best on <modality>.select_by."""

from __future__ import annotations

import json

import pytest
import torch

import mmgan
from mmgan import checkpoint
from mmgan.contract.manager import get_plugin_manager, metric_goals
from mmgan.engine import Trainer
from mmgan.errors import ConfigError
from mmgan.evaluation.inference import load_generator

EVAL = ("train.eval_every=2", "train.eval_samples=130", "train.checkpoint_every=2")


class ScriptedMetric:
    """A metric plugin whose values are given in advance, one per evaluation."""

    def __init__(self, goal: str, values: list[float]) -> None:
        self.goal, self.values = goal, list(values)

    @mmgan.hookimpl
    def mmgan_register_metrics(self, register):
        register("image", "scripted", self.goal)

    @mmgan.hookimpl
    def mmgan_evaluate(self, ctx):
        return {"scripted": self.values.pop(0)} if ctx.modality.name == "image" else None


@pytest.fixture
def scripted():
    pm = get_plugin_manager()
    added = []

    def register(goal: str, values: list[float]) -> ScriptedMetric:
        plugin = ScriptedMetric(goal, values)
        pm.register(plugin, name=f"scripted-{len(added)}")
        added.append(plugin)
        return plugin

    yield register
    for plugin in added:
        pm.unregister(plugin)


def _meta(run, last=False):
    return checkpoint.read_export(run, "image", last)[1]


@pytest.mark.slow
@pytest.mark.parametrize(("goal", "best_step"), [("max", 4), ("min", 6)])
def test_the_best_export_follows_the_metrics_direction(tiny_config, tmp_path, scripted, cli_run, goal, best_step):
    plugin = scripted(goal, [0.5, 0.7, 0.3])
    run = tmp_path / "run"
    Trainer(tiny_config(run, steps=6, extra=(*EVAL, "image.select_by=scripted")), progress=False).fit()
    best, last = _meta(run), _meta(run, last=True)
    assert last["step"] == 6 and "selected_by" not in last
    assert best["step"] == best_step
    assert best["selected_by"] == {"metric": "scripted", "goal": goal, "value": {4: 0.7, 6: 0.3}[best_step],
                                   "step": best_step}
    # generate and eval use the best export by default, the last with --last
    state, _ = checkpoint.read_export(run, "image")
    generator, _ = load_generator(run, "image")
    assert all(torch.equal(v, generator.state_dict()[k]) for k, v in state.items())
    if best_step != 6:
        last_state, _ = checkpoint.read_export(run, "image", last=True)
        assert not torch.equal(state["heads.image.net.0.weight"], last_state["heads.image.net.0.weight"])
    plugin.values += [0.1, 0.1]  # for the two evaluations below
    report = tmp_path / "e.json"
    assert cli_run("eval", run, "-n", 130, "--out", report).exit_code == 0
    assert json.loads(report.read_text())["step"] == best_step
    assert cli_run("eval", run, "-n", 130, "--out", report, "--last").exit_code == 0
    assert json.loads(report.read_text())["step"] == 6
    assert cli_run("generate", run, "-n", 4, "-o", tmp_path / "g.png", "--last").exit_code == 0


@pytest.mark.slow
def test_the_best_score_survives_resume(tiny_config, tmp_path, scripted):
    scripted("min", [0.2, 0.1, 0.4])
    run = tmp_path / "run"
    Trainer(tiny_config(run, steps=4, extra=(*EVAL, "image.select_by=scripted")), progress=False).fit()
    assert _meta(run)["step"] == 4
    config = tiny_config(run, steps=6, extra=(*EVAL, "image.select_by=scripted"))
    Trainer(config, resume=True, progress=False).fit()
    # 0.4 at step 6 is worse than the 0.1 of step 4, which the checkpoint remembered
    assert _meta(run)["step"] == 4 and _meta(run)["selected_by"]["value"] == 0.1
    assert _meta(run, last=True)["step"] == 6


def test_select_by_an_undeclared_metric_is_an_error_naming_the_declared_ones(tiny_config, tmp_path):
    with pytest.raises(ConfigError, match=r"image.select_by.*'nope'.*declared: .*fd"):
        Trainer(tiny_config(tmp_path / "run", extra=("image.select_by=nope",)), progress=False)
    assert not (tmp_path / "run").exists()


def test_built_in_metrics_declare_their_direction():
    goals = metric_goals()
    assert goals[("image", "fd")] == "min" and goals[("image", "mode_coverage")] == "max"
    assert goals[("speech", "mel_l1")] == "min" and goals[("speech", "stoi")] == "max"
