"""Two "machines" of one process each on this host, started the way a cluster starts them (accelerate launch
--num_machines 2 --machine_rank 0|1 with one main address and port, gloo), and a rank that dies.

What multi-node changes, and what these tests check: global ranks (each machine's process is local rank 0),
the shards split by global rank, rank 0 of machine 0 alone writing, identical weights on every rank, exact
resume of the 2-machine run, and a rank killed on machine 1: the other machine stops within seconds with
one line naming it, and `--resume` continues from the last checkpoint. Also here: a frozen rank (a
machine that went away) in a bare gloo group, and benchmarks/gpu.sh in its tiny CPU mode.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error, read_metrics, tiny_args
from safetensors.torch import load_file
from test_distributed import TINY, WORKER, free_port, settings, shards  # noqa: F401 - shards is a fixture

from mmgan import checkpoint

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--plugin", "image", "--plugin", "speech", "--batch-size", 4, "--no-progress",
        *settings(*TINY, "train.checkpoint_every=2", "train.sample_every=2", "train.ema_decay=0.9")]


def start_machines(logs: Path, *args: object, **env_extra: str) -> list[subprocess.Popen]:
    """`accelerate launch` on machine 0 and machine 1 (one process each), as two cluster nodes run it; their
    output goes to logs/machine<m>.log (a pipe nobody reads while they train could fill and block them). Each
    launcher leads a process group of its own, as on its own machine."""
    port = str(free_port())
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", **env_extra}
    machines = []
    for machine in (0, 1):
        with open(logs / f"machine{machine}.log", "w") as log:
            machines.append(subprocess.Popen(
                [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                 "--num_machines", "2", "--machine_rank", str(machine), "--main_process_ip", "127.0.0.1",
                 "--main_process_port", port, "--mixed_precision", "no", "--dynamo_backend", "no", *map(str, args)],
                stdout=log, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT, start_new_session=True))
    return machines


def finish(logs: Path, machines: list[subprocess.Popen], timeout: float = 300) -> None:
    """Wait for both launchers; both must succeed."""
    for number, machine in enumerate(machines):
        machine.wait(timeout=timeout)
        assert machine.returncode == 0, (logs / f"machine{number}.log").read_text()[-3000:]


def data(shard_root: Path) -> list[str]:
    return ["--data", f"image={shard_root / 'img'}", "--data", f"speech={shard_root / 'sp'}"]


@pytest.fixture(scope="module")
def unbroken(shards, tmp_path_factory):  # noqa: F811 - the fixture imported above
    """A 2-machine run of 6 steps from shards, with what each rank held and read at the end."""
    dumps = tmp_path_factory.mktemp("unbroken")
    finish(dumps, start_machines(dumps, WORKER, "train", dumps, *data(shards), "--out", dumps / "run", "--steps", 6,
                                 *ARGS))
    return dumps


@pytest.mark.slow
def test_two_machines_train_from_shards_split_by_global_rank_and_only_rank_0_writes(shards, unbroken):  # noqa: F811
    run = unbroken / "run"
    ranks = [load_file(str(unbroken / f"rank{r}.safetensors")) for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys() and any(k.startswith("G.heads.speech.") for k in ranks[0])
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), f"{key} differs between the machines"

    # each machine's process is local rank 0; the shards are split by the global rank (0 and 1 of 2)
    reads = [json.loads((unbroken / f"shards{r}.json").read_text()) for r in range(2)]
    for name in ("image", "speech"):
        mine = [reads[r][name] for r in range(2)]
        assert [(m["rank"], m["world"], m["local"]) for m in mine] == [(0, 2, 0), (1, 2, 0)]
        assert mine[0]["assigned"] and not set(mine[0]["assigned"]) & set(mine[1]["assigned"])
        for m in mine:  # what each rank opened is its own share of the 4 shards
            assert m["opened"] == sorted(m["assigned"]), name
        every = sorted(p.name for p in (shards / ("img" if name == "image" else "sp")).glob("*.tar"))
        assert sorted(Path(url).name for m in mine for url in m["assigned"]) == every

    # rank 0 alone wrote: one metrics line per step, each sample file and checkpoint once
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3, 4, 5, 6]
    assert sorted(p.name for p in (run / "samples" / "image").iterdir()) == [
        "step_000002.png", "step_000004.png", "step_000006.png"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000002", "step_000004", "step_000006"]
    assert json.loads((run / "run.json").read_text())["processes"] == 2


@pytest.mark.slow
def test_a_killed_rank_stops_the_other_machine_in_one_line_and_the_run_resumes_exactly(shards, unbroken, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    machines = start_machines(tmp_path, WORKER, "cli", tmp_path, "run", *data(shards), "--out", run, "--steps", 100_000,
                              *ARGS)
    deadline = time.monotonic() + 240
    while not ((run / "metrics.jsonl").exists() and len(read_metrics(run)) >= 3):
        assert time.monotonic() < deadline and all(m.poll() is None for m in machines), (
            (tmp_path / "machine0.log").read_text()[-3000:])
        time.sleep(0.1)
    killed = time.monotonic()
    os.kill(int((tmp_path / "pid1").read_text()), signal.SIGKILL)  # rank 1, the process on machine 1
    machines[0].wait(timeout=120)
    seconds = time.monotonic() - killed
    machines[1].wait(timeout=60)
    err = (tmp_path / "machine0.log").read_text()
    assert machines[0].returncode != 0 and seconds < 120
    # the worker's own output is one line; accelerate launch then reports its failed child (its traceback)
    ours = err.split("torch/distributed/elastic")[0]
    errors = [line for line in ours.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in ours, ours[-3000:]
    saved = int(sorted((run / "checkpoints").iterdir())[-1].name.removeprefix("step_"))
    assert "rank 1 " in errors[0] and f"checkpoint of step {saved} with: mmgan run --resume {run}" in errors[0]
    print(f"machine 0 stopped {seconds:.1f} s after rank 1 was killed: {errors[0]}")

    # resume the 2-machine run where it stopped: it continues as the unbroken run did
    finish(tmp_path, start_machines(tmp_path, "-m", "mmgan", "run", "--resume", run, "--steps", 6, "--no-progress"))
    resumed, reference = read_metrics(run), read_metrics(unbroken / "run")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(reference, resumed, strict=True):
        assert {k: v for k, v in a.items() if "/" in k} == {k: v for k, v in b.items() if "/" in k}, a["step"]


@pytest.mark.slow
@pytest.mark.parametrize("victim, what, during", [
    (1, "launcher", "a step"),  # the case reported: machine 1's launcher killed with its process group
    (0, "launcher", "a step"),  # the rendezvous store goes with it
    (1, "machine", "evaluate"),
    (0, "machine", "save_checkpoint"),
])
def test_a_dead_machine_stops_the_other_in_one_line_within_two_minutes(shards, tmp_path, victim, what, during):  # noqa: F811
    """Issue 26 item 4. Killing a machine's launcher with its process group left its worker training on (the
    launcher starts workers in sessions of their own), and the other machine with it: that worker now stops the
    run as SIGTERM does, with a checkpoint. A whole machine killed (launcher and worker) during a step, an
    evaluation or a checkpoint: the survivor names the dead rank. Either way the survivor exits non-zero with
    one line of mmgan's own, within two minutes."""
    run = tmp_path / "run"
    slow = {} if during == "a step" else {"MMGAN_TEST_SLOW": during}
    machines = start_machines(tmp_path, WORKER, "cli", tmp_path, "run", *data(shards), "--out", run, "--steps",
                              100_000, *ARGS, "--set", "train.eval_every=4", "--set", "train.eval_samples=130",
                              MMGAN_RANK_TIMEOUT="20", **slow)
    deadline = time.monotonic() + 240
    while not (((run / "metrics.jsonl").exists() and len(read_metrics(run)) >= 3) if during == "a step"
               else (tmp_path / f"in_{during}").exists()):
        assert time.monotonic() < deadline and all(m.poll() is None for m in machines), (
            (tmp_path / "machine0.log").read_text()[-3000:])
        time.sleep(0.1)
    killed = time.monotonic()
    os.killpg(machines[victim].pid, signal.SIGKILL)
    if what == "machine":
        os.kill(int((tmp_path / f"pid{victim}").read_text()), signal.SIGKILL)
    survivor = machines[1 - victim]
    survivor.wait(timeout=150)
    seconds = time.monotonic() - killed
    out = (tmp_path / f"machine{1 - victim}.log").read_text()
    ours = out.split("torch/distributed/elastic")[0]  # then the launcher reports its failed child
    lines = [line for line in ours.splitlines() if line.startswith(("Error:", "stopped by"))]
    assert survivor.returncode != 0 and seconds < 120, (seconds, out[-3000:])
    assert len(lines) == 1 and "Traceback" not in ours, ours[-3000:]
    if what == "machine":
        assert lines[0].startswith(f"Error: rank {victim}") and "stopped answering" in lines[0], lines[0]
    else:  # the orphaned worker stopped the run at a step boundary, with a checkpoint on every rank
        assert lines[0].startswith("stopped by SIGTERM") and "checkpoint written" in lines[0], lines[0]
        step = int(lines[0].split(" at step ")[1].split(",")[0])
        assert checkpoint.checkpoint_dirs(run)[-1].name == f"step_{step:06d}"
    for machine in machines:
        if machine.poll() is None:
            os.killpg(machine.pid, signal.SIGKILL)
    print(f"{what} {victim} killed during {during}: machine {1 - victim} stopped {seconds:.1f} s later: {lines[0]}")


@pytest.mark.slow
def test_a_frozen_rank_is_named_within_the_rank_timeout(tmp_path):
    """A rank that stops answering without closing its connections (SIGSTOP: a machine gone from the network)
    ends the others after MMGAN_RANK_TIMEOUT, not after the process group's hour."""
    port = str(free_port())
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": "2",
           "MMGAN_RANK_TIMEOUT": "4", "OMP_NUM_THREADS": "1"}
    ranks = [subprocess.Popen([sys.executable, str(WORKER), "watch", str(tmp_path), "1", "stop"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**env, "RANK": str(r)})
             for r in range(2)]
    try:
        err = ranks[0].communicate(timeout=120)[1]
        stopped = float((tmp_path / "stopped").read_text())
        seconds = time.time() - stopped
    finally:
        ranks[1].send_signal(signal.SIGCONT)
        ranks[1].kill()
        ranks[1].communicate()
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert ranks[0].returncode == 1 and len(errors) == 1, err[-3000:]
    assert errors[0].startswith("Error: rank 1 (") and "of 2 stopped answering" in errors[0]
    assert seconds < 4 + 20, seconds
    print(f"rank 0 stopped {seconds:.1f} s after rank 1 froze: {errors[0]}")


def test_resume_auto_starts_a_run_then_continues_it(cli_run, tmp_path):
    """What a requeued cluster job runs: the same command line each time (docs/distributed.md)."""
    run = tmp_path / "run"
    command = ["run", "--plugin", "image", "--resume", "auto"]
    assert cli_run(*command, *tiny_args(run, steps=2)).exit_code == 0  # no run there: it starts
    assert cli_run(*command, *tiny_args(run, steps=4)).exit_code == 0  # a run there: it continues
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3, 4]
    assert_one_line_error(cli_run("run", "--plugin", "image", "--resume", "auto"), "--resume auto needs --out")


@pytest.mark.slow
def test_the_gpu_readiness_script_runs_at_tiny_sizes_without_a_gpu(tmp_path):
    """benchmarks/gpu.sh --tiny: every step of the GPU check (training in fp32 and bf16, generate, vocode, eval,
    both benchmarks) at tiny sizes, into one results file; with mmgan and its dependencies already installed."""
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--tiny", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=900)
    results = (tmp_path / "results.md").read_text() if (tmp_path / "results.md").exists() else ""
    assert done.returncode == 0, results + done.stderr[-3000:]
    assert "installing" not in done.stdout  # nothing to install here
    for step in ("train image+speech, fp32", "train image+speech, bf16", "generate", "vocode", "eval image",
                 "eval speech", "## benchmarks/train_image.py", "## benchmarks/vocoder.py", "(tiny mode)"):
        assert step in results, step
    assert "**NO**" not in results and "FAILED" not in results
    assert "| 32 | mmgan |" in results and "| mmgan |" in results.split("## benchmarks/vocoder.py")[1]
