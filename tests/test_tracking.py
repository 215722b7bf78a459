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


def test_a_tracker_that_cannot_start_is_one_line_and_leaves_no_run_directory(cli_run, tmp_path, monkeypatch):
    """Row 66: wandb without a key was a catch-all UsageError and left a run directory behind; with a key but no
    network it took 104 s. Any tracker that fails to start is one line naming it, before anything is written."""
    import accelerate.tracking

    def no_key(self):
        raise RuntimeError("No API key configured.\nUse `login` to log in.")

    monkeypatch.setattr(accelerate.tracking.TensorBoardTracker, "start", no_key)
    run = tmp_path / "run"
    args = ("run", "--plugin", "image", *tiny_args(run), "--set", "train.log_with=tensorboard")
    assert_one_line_error(cli_run(*args), "the tensorboard tracker could not start: No API key configured. Use `login`",
                          "leave it out of train.log_with")
    assert not run.exists()
    run.mkdir()
    (run / "NOTES.md").write_text("mine")  # a directory the user made: kept, with their file
    assert_one_line_error(cli_run(*args), "the tensorboard tracker could not start")
    assert sorted(p.name for p in run.iterdir()) == [".lock", "NOTES.md"]
    monkeypatch.undo()
    assert cli_run(*args).exit_code == 0  # and the same command works once the tracker starts


def test_wandb_keeps_its_files_in_the_run_and_gives_up_on_an_unreachable_server_in_30_s(tmp_path, monkeypatch):
    from mmgan.engine.tracking import init_kwargs

    monkeypatch.delenv("WANDB_INIT_TIMEOUT", raising=False)
    wandb = init_kwargs(tmp_path / "run")["wandb"]
    assert wandb == {"name": "run", "dir": str(tmp_path / "run" / "trackers"), "settings": {"init_timeout": 30}}
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "300")  # the user's own setting wins
    assert "settings" not in init_kwargs(tmp_path / "run")["wandb"]


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
