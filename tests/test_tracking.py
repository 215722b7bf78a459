"""train.log_with: trackers through Accelerate (TensorBoard tested), and the run's facts in run.json."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import SPEECH_TINY, assert_one_line_error, tiny_args

from mmgan.engine.tracking import check_trackers
from mmgan.errors import ConfigError


def events(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "trackers" / "mmgan"), size_guidance={"images": 0, "audio": 0, "scalars": 0})
    acc.Reload()
    return acc


def test_tensorboard_gets_losses_metrics_images_and_audio(cli_run, tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    result = cli_run("run", "--plugin", "image", "--plugin", "speech", *tiny_args(run, steps=2),
                     *[a for s in SPEECH_TINY for a in ("--set", s)], "--set", "train.sample_every=2",
                     "--set", "train.log_with=tensorboard")
    assert result.exit_code == 0, result.output
    acc = events(run)
    assert [e.step for e in acc.Scalars("image/d/adv")] == [1, 2]
    assert [e.step for e in acc.Scalars("speech/g/adv")] == [1, 2]
    assert [e.step for e in acc.Images("image/samples")] == [2]
    assert acc.Images("image/samples")[0].width > 0
    assert [e.step for e in acc.Audio("speech/audio")] == [2]
    assert acc.Audio("speech/audio")[0].sample_rate == 22050


def test_a_missing_tracker_package_is_one_line_naming_the_extra(cli_run, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"needs the wandb package: pip install 'mmgan\[wandb\]'"):
        check_trackers(["wandb"])
    assert_one_line_error(cli_run("run", "--plugin", "image", *tiny_args(tmp_path / "r"), "--set",
                                  "train.log_with=wandb"), "train.log_with", "mmgan[wandb]")
    assert_one_line_error(cli_run("run", "--plugin", "image", *tiny_args(tmp_path / "r"), "--set",
                                  "train.log_with=papyrus"), "unknown tracker 'papyrus'", "tensorboard")
    assert not (tmp_path / "r").exists()


def test_run_json_records_each_session(cli_run, tmp_path):
    run = tmp_path / "run"
    assert cli_run("run", "--plugin", "image", *tiny_args(run, steps=1)).exit_code == 0
    assert cli_run("run", "--resume", run, "--steps", "2").exit_code == 0
    facts = json.loads((run / "run.json").read_text())
    assert facts["status"] == "finished" and facts["step"] == 2 and facts["processes"] == 1
    assert facts["precision"] in ("no", "bf16") and facts["device"] == "cpu"
    assert {"mmgan_version", "torch", "accelerate", "python", "plugins", "started", "ended"} <= set(facts)
    assert "image" in facts["plugins"]
    assert [(s["from_step"], s["to_step"], s["status"]) for s in facts["sessions"]] == [(0, 1, "finished"),
                                                                                       (1, 2, "finished")]
    assert facts["started"] == facts["sessions"][0]["started"] <= facts["ended"] == facts["sessions"][1]["ended"]
