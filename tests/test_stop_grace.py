"""A signalled stop ends within the grace period (docs/reliability.md, "Signals"; issue 26 item 3).

A step or a checkpoint that would outlast ``MMGAN_STOP_GRACE`` is abandoned: the run exits 143 with one
line, the last complete checkpoint stays, and ``--resume`` continues from it. Real ``mmgan run`` processes
get a real SIGTERM; the long work is a patched step or checkpoint that sleeps (Python code, which the grace
interrupts) or swallows every interruption (native code that never returns, which it leaves).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import tiny_args
from test_faults import ROOT, wait_for_step

from mmgan import checkpoint
from mmgan.engine.stop import StopRequests, stop_grace
from mmgan.errors import ConfigError

# the patched work starts once step 2's checkpoint is written
SLOW = {
    "checkpoint": """
        real = Trainer.save_checkpoint
        def save_checkpoint(self):
            if self.step > 2:
                sleep_through()
            real(self)
        Trainer.save_checkpoint = save_checkpoint
    """,
    "step": """
        real = Trainer.train_step
        def train_step(self, batches):
            if self.step >= 3:
                sleep_through()
            return real(self, batches)
        Trainer.train_step = train_step
    """,
}
SLEEP = {
    "python": "def sleep_through():\n    time.sleep(600)\n",
    # native code that does not return: every interruption is swallowed
    "native": "def sleep_through():\n    while True:\n        try:\n            time.sleep(600)\n"
              "        except BaseException:\n            pass\n",
}


def slow_run(tmp_path: Path, where: str, sleep: str, *args: str) -> subprocess.Popen:
    script = tmp_path / "slow.py"
    script.write_text("import time\nfrom mmgan.engine.trainer import Trainer\n" + SLEEP[sleep]
                      + textwrap.dedent(SLOW[where]) + "from mmgan.cli.commands import main\nmain()\n")
    env = {**os.environ, "MMGAN_STOP_GRACE": "2",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("where, sleep, says", [
    ("step", "python", "the step or checkpoint in progress did not end within 2 s of the signal"),
    ("checkpoint", "python", "the step or checkpoint in progress did not end within 2 s of the signal"),
    ("checkpoint", "native", "in native code that did not return"),
])
def test_a_stop_that_outlasts_the_grace_period_is_abandoned_and_the_last_checkpoint_kept(
        cli_run, tmp_path, where, sleep, says):
    run = tmp_path / "run"
    process = slow_run(tmp_path, where, sleep, "run", "--plugin", "image", *tiny_args(run, steps=100_000),
                       "--set", "train.checkpoint_every=2", "--set", "train.sample_every=100000")
    wait_for_step(run, 2 if where == "checkpoint" else 3, process)
    while not checkpoint.checkpoint_dirs(run):  # step 2's checkpoint is complete
        time.sleep(0.05)
    if where == "checkpoint":
        time.sleep(0.5)  # step 3 ran; its slow checkpoint is under way (checkpoint_every=2: saved at the stop)
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    took = time.monotonic() - signalled
    assert process.returncode == 143, err
    assert says in err and f"mmgan run --resume {run}" in err, err
    assert "Traceback" not in err
    assert took < 2 + 3 + 10, took  # the grace, the native allowance, and a loaded machine's slack
    assert [p.name for p in checkpoint.checkpoint_dirs(run)] == ["step_000002"]
    result = cli_run("run", "--resume", run, "--steps", "4")
    assert result.exit_code == 0, result.output
    assert not list((run / "checkpoints").glob(".*partial"))


def test_the_grace_period_is_a_number_of_seconds(monkeypatch):
    monkeypatch.delenv("MMGAN_STOP_GRACE", raising=False)
    assert stop_grace() == 25
    monkeypatch.setenv("MMGAN_STOP_GRACE", "0")  # no limit: wait for the step and the checkpoint
    assert stop_grace() == 0
    for bad in ("soon", "-1", "inf", "nan"):
        monkeypatch.setenv("MMGAN_STOP_GRACE", bad)
        with pytest.raises(ConfigError, match=f"MMGAN_STOP_GRACE={bad!r}: expected a number of seconds"):
            stop_grace()


def test_without_a_grace_period_no_clock_runs():
    requests = StopRequests(grace=0)
    requests.handle(signal.SIGTERM, None)
    assert requests.signum == signal.SIGTERM and not requests.expired
    assert not [t for t in __import__("threading").enumerate() if t.name == "mmgan-stop-grace"]


def test_the_rank_timeout_is_a_positive_number_of_seconds(monkeypatch):
    from datetime import timedelta

    from mmgan.engine.rankwatch import rank_timeout

    monkeypatch.delenv("MMGAN_RANK_TIMEOUT", raising=False)
    assert rank_timeout() == timedelta(seconds=90)
    monkeypatch.setenv("MMGAN_RANK_TIMEOUT", "4.5")
    assert rank_timeout() == timedelta(seconds=4.5)
    for bad in ("0", "-2", "soon", "inf"):
        monkeypatch.setenv("MMGAN_RANK_TIMEOUT", bad)
        with pytest.raises(ConfigError, match=f"MMGAN_RANK_TIMEOUT={bad!r}: expected a positive number of seconds"):
            rank_timeout()
