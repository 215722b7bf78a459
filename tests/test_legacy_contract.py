"""Plugins written against contract 6 (per-modality hooks, the old loss-term hooks, command options) keep
training, sampling and evaluating unchanged through the legacy specs, and are warned once."""

from __future__ import annotations

import json
import warnings

import click
import pytest
from click.testing import CliRunner
from conftest import read_metrics

from mmgan.cli.commands import _add_plugin_options, eval_command
from mmgan.contract import legacy
from mmgan.contract.manager import get_modality_object, get_plugin_manager
from mmgan.testing import plugin_registered, tiny_run


@pytest.fixture
def pulse():
    legacy._WARNED.discard("pulse")
    with plugin_registered("legacy_v6.pulse_v6", name="pulse") as plugin:
        yield plugin


def test_a_modality_of_module_hooks_trains_samples_and_evaluates(tmp_path, pulse):
    obj = get_modality_object("pulse")
    assert isinstance(obj, legacy.LegacyModality) and obj.plugin_name == "pulse"
    run = tiny_run(tmp_path / "run", plugins=["pulse"], steps=4, batch_size=8)
    losses = [row for row in read_metrics(run) if "pulse/g/adv" in row]
    assert losses and all("pulse/g/centre" in row for row in losses)  # its old generator loss-term hook
    assert sorted(p.name for p in (run / "samples" / "pulse").glob("*.txt"))
    assert (run / "export" / "pulse.safetensors").is_file()
    # eval as core defines it, given the options of the plugins registered now (the CLI adds them once)
    command = click.Command("eval", params=[p for p in eval_command.params if p.name != "inception_weights"],
                            callback=eval_command.callback)
    _add_plugin_options(command, get_plugin_manager())
    result = CliRunner().invoke(command, [str(run), "-n", "16", "--pulse-note", "x", "--out",
                                          str(tmp_path / "eval.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval.json").read_text())
    assert "peak_gap" in report["metrics"] and report["options"] == {"pulse_note": "x"}


def test_a_plugin_of_per_modality_hooks_is_warned_once(pulse):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        legacy.warn_legacy_plugins(get_plugin_manager())
        legacy.warn_legacy_plugins(get_plugin_manager())
    ours = [w for w in caught if "'pulse'" in str(w.message)]
    assert len(ours) == 1 and issubclass(ours[0].category, DeprecationWarning)
    assert "mmgan_build_generator -> ModalityPlugin.build_generator" in str(ours[0].message)
    assert "mmgan 1.0" in str(ours[0].message)


def test_new_plugin_s_loss_term_of_contract_6_still_logs_its_term(tmp_path):
    with plugin_registered("legacy_v6.moments_v6", name="moments"):
        run = tiny_run(tmp_path / "run", plugins=["image"], steps=2, overrides=["moments.weight=0.5"])
    assert all("image/g/moments" in row for row in read_metrics(run) if "image/g/adv" in row)


def test_new_plugin_s_modality_of_contract_6_still_trains(tmp_path):
    with plugin_registered("legacy_v6.wave_v6:plugin", name="wave"):
        run = tiny_run(tmp_path / "run", plugins=["wave"], steps=2)
    assert (run / "export" / "wave.safetensors").is_file()
    assert list((run / "samples" / "wave").glob("step_*.png"))
