"""The collapse watchdog: each signal is found once its window holds, not before, and not on a healthy run;
what ``train.on_collapse`` does (warn, stop, rollback); watching changes no result."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from conftest import TINY, read_metrics

import mmgan.config as cfg
from mmgan import checkpoint
from mmgan.contract.manager import get_modality
from mmgan.engine.trainer import Trainer
from mmgan.engine.watchdog import CollapseWatch, spread
from mmgan.errors import ConfigError, TrainingCollapsed


def watch(floor: float | None = 0.05, explosion: float | None = 6.0, start: int = 0, window: int = 100,
          level: float = 0.2) -> CollapseWatch:
    return CollapseWatch("warn", window, level, 10, 20, {"m": start}, {"m": floor}, {"m": explosion})


def feed(w: CollapseWatch, steps: range, d, g, diversity=None) -> list:
    found = []
    for step in steps:
        w.observe_losses(step, {"m/d/adv": d(step), "m/g/adv": g(step)})
        if diversity is not None and step % w.watch_every == 0:
            w.observe_diversity(step, "m", diversity(step))
        if step % w.watch_every == 0:
            found += w.check(step)
    return found


def noisy(level: float, spread_: float = 0.3, seed: int = 0):
    rng = random.Random(seed)
    return lambda step: level * (1 + spread_ * (rng.random() - 0.5))


def test_a_pinned_d_loss_is_found_once_within_a_window_of_its_onset_and_a_healthy_one_never():
    healthy = feed(watch(), range(10, 3001, 10), noisy(0.6), noisy(2.0))
    assert healthy == []
    d = noisy(0.6)
    found = feed(watch(), range(10, 3001, 10), lambda s: d(s) if s < 1000 else 1e-3, noisy(2.0, seed=1))
    assert [c.signal for c in found] == ["d_pinned"]  # once, though it holds to the end
    assert 1000 < found[0].step <= 1000 + 100 + 25 and 900 <= found[0].onset <= 1000
    assert "collapse of m at step" in found[0].line() and "D's adversarial loss pinned" in found[0].line()


def test_a_hinge_loss_at_zero_is_not_a_collapse_but_a_d_loss_that_does_not_move_is():
    assert feed(watch(floor=None), range(10, 2001, 10), noisy(0.01), noisy(1.0)) == []
    found = feed(watch(floor=None), range(10, 2001, 10), lambda s: 2.0 if s > 500 else 1.0 + (s % 20) / 100,
                 noisy(1.0))
    assert [c.signal for c in found] == ["d_pinned"] and found[0].value == 2.0


def test_g_exploding_is_measured_against_its_own_first_window_and_the_loss_s_level():
    # G's loss at 5 from its start (under the level 6): healthy; then 30: exploding
    g = noisy(5.0, 0.01)
    found = feed(watch(), range(10, 2001, 10), noisy(0.6), lambda s: g(s) if s < 1000 else 30.0)
    assert [c.signal for c in found] == ["g_exploding"] and found[0].threshold == pytest.approx(20.0, rel=0.01)  # 4 x 5
    assert 1000 < found[0].step <= 1125
    # a loss without a level is not judged
    assert feed(watch(explosion=None), range(10, 2001, 10), noisy(0.6), lambda s: 5.0 if s < 1000 else 30.0) == []


def test_diversity_is_judged_after_two_windows_of_adversarial_training_and_only_when_it_stays_low():
    low = feed(watch(start=500), range(10, 691, 10), noisy(0.6), noisy(2.0), lambda s: 0.01)
    assert low == []  # before 500 + 2 x 100: a GAN starts with little diversity
    found = feed(watch(), range(10, 2001, 10), noisy(0.6), noisy(2.0), lambda s: 0.9 if s < 1000 else 0.05)
    assert [c.signal for c in found] == ["diversity"] and 1000 < found[0].step <= 1125
    # one check above the level in each window: not collapsed
    assert feed(watch(), range(10, 2001, 10), noisy(0.6), noisy(2.0), lambda s: 0.9 if s % 100 == 0 else 0.05) == []


def test_spread_is_the_mean_pairwise_distance():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    assert spread(x) == pytest.approx((5 + 5 + 0) * 2 / 6)
    assert spread(torch.ones(5, 7)) == 0.0


def test_the_watchdog_state_round_trips():
    w = watch()
    feed(w, range(10, 1501, 10), noisy(0.6), noisy(2.0))
    w.lr_scale, w.rollbacks = 0.5, [{"at_step": 1100, "to_step": 1000}]
    again = watch()
    again.load_state_dict(json.loads(json.dumps(w.state_dict())))
    assert again.state_dict() == w.state_dict()


# ---- in a run -----------------------------------------------------------------------------------------

# every check is a collapse: the real data's spread is never reached by a tiny generator at these steps
PROVOKED = ["train.collapse_diversity=1", "train.collapse_window=20", "train.collapse_every=5", "train.log_every=5"]


def run(out: Path, steps: int, *extra: str, resume: bool = False) -> Trainer:
    trainer = Trainer(cfg.resolve(get_modality, plugins=["image"], out=out, steps=steps, batch_size=8,
                                  overrides=[*TINY, "train.checkpoint_every=10", *extra]),
                      resume=resume, progress=False)
    trainer.fit()
    return trainer


@pytest.mark.slow
def test_watching_changes_no_result(tmp_path):
    run(tmp_path / "off", 30, "train.on_collapse=off", "train.log_every=5")
    run(tmp_path / "warn", 30, *PROVOKED)
    losses = [[{k: v for k, v in r.items() if "/watch/" not in k} for r in read_metrics(tmp_path / name)
               if any(k.endswith("/adv") for k in r)] for name in ("off", "warn")]
    assert losses[0] == losses[1] and losses[0]
    watched = [r["image/watch/diversity"] for r in read_metrics(tmp_path / "warn") if "image/watch/diversity" in r]
    assert len(watched) == 6 and all(0 < v < 1 for v in watched)
    assert not any("/watch/" in k for r in read_metrics(tmp_path / "off") for k in r)


@pytest.mark.slow
def test_warn_trains_on_with_a_flag_in_run_json(tmp_path, caplog):
    run(tmp_path / "r", 50, *PROVOKED)
    found = json.loads((tmp_path / "r" / "run.json").read_text())["collapse"]
    assert [(c["signal"], c["step"], c["action"]) for c in found] == [("diversity", 40, "warn")]
    assert "collapse of image at step 40: sample diversity" in caplog.text and "training on" in caplog.text
    assert checkpoint.checkpoint_dirs(tmp_path / "r")[-1].name == "step_000050"


@pytest.mark.slow
def test_stop_ends_the_run_in_one_line_with_its_last_checkpoint(tmp_path, cli_run):
    out = tmp_path / "r"
    result = cli_run("run", "--plugin", "image", "--out", out, "--steps", 50, "--batch-size", 8,
                     *[a for s in [*TINY, "train.checkpoint_every=10", *PROVOKED, "train.on_collapse=stop"]
                       for a in ("--set", s)])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and "collapse of image at step 40" in lines[0]
    assert "its last checkpoint is step 30" in lines[0]


@pytest.mark.slow
def test_rollback_goes_back_before_the_onset_with_halved_rates_which_a_resume_keeps(tmp_path):
    out = tmp_path / "r"
    # each window finds the collapse again: three rollbacks to step 20 (rates x0.5, x0.25, x0.125), then a stop
    with pytest.raises(TrainingCollapsed, match="collapsed again after 3 rollbacks"):
        run(out, 80, *PROVOKED, "train.on_collapse=rollback", "train.keep_checkpoints=1")
    facts = json.loads((out / "run.json").read_text())
    assert [(r["at_step"], r["to_step"], r["lr_scale"]) for r in facts["rollbacks"]] == [
        (40, 20, 0.5), (40, 20, 0.25), (40, 20, 0.125)]
    # keep_checkpoints=1 kept steps 10 and 20 beside the newest (30): the rollback's targets are protected from
    # rotation; none after step 30 was kept (the collapsed run's)
    assert [d.name for d in checkpoint.checkpoint_dirs(out)] == ["step_000010", "step_000020", "step_000030"]
    steps = [r["step"] for r in read_metrics(out) if "image/d/adv" in r]
    assert steps == sorted(steps)  # the abandoned steps' rows are gone from metrics.jsonl
    trainer = run(out, 60, "train.on_collapse=warn", "train.keep_checkpoints=1", resume=True)
    assert trainer.opt_g.param_groups[0]["lr"] == pytest.approx(2e-4 * 0.125)
    assert trainer.opt_d.param_groups[0]["lr"] == pytest.approx(2e-4 * 0.125)


@pytest.mark.slow
def test_rollback_without_a_checkpoint_before_the_onset_says_so_and_stops(tmp_path):
    with pytest.raises(TrainingCollapsed, match="no checkpoint from before step 20 to roll back to"):
        run(tmp_path / "r", 60, *PROVOKED, "train.on_collapse=rollback", "train.checkpoint_every=100")


@pytest.mark.parametrize(("setting", "message"), [
    ("train.on_collapse=maybe", "train.on_collapse must be off, warn, stop or rollback, got 'maybe'"),
    ("train.collapse_window=-1", "train.collapse_window and train.collapse_every must be >= 0"),
    ("train.collapse_diversity=2", "train.collapse_diversity must be in [0, 1], got 2"),
])
def test_watchdog_settings_are_checked(tmp_path, setting, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        run(tmp_path / "r", 2, setting)


def test_a_d_loss_at_its_chance_level_tells_nothing_apart():
    w = CollapseWatch("warn", 100, 0.2, 10, 20, {"m": 0}, {"m": 0.05}, {"m": 6.0}, {"m": 1.386})
    d = noisy(0.2)
    found = feed(w, range(10, 2001, 10), lambda s: d(s) if s < 1000 else 1.386 + 0.1 * ((s // 10) % 3 - 1),
                 noisy(2.0))
    assert [(c.signal, c.threshold) for c in found] == [("d_pinned", 1.386)] and 1000 < found[0].step <= 1120
