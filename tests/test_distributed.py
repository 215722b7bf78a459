"""Two real processes (gloo on CPU) under `accelerate launch`, as users run them.

`accelerate launch --cpu --num_processes 2` starts ONE process; the form used here (ACCELERATE_USE_CPU=1 with
--multi_gpu) is the one that gives two gloo ranks on a CPU machine.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import SPEECH_TINY, read_metrics
from safetensors.torch import load_file

from mmgan.data.shards import pack
from mmgan_image.shards import ImageCodec
from mmgan_speech.shards import SpeechCodec

WORKER = Path(__file__).with_name("dist_worker.py")
TINY = ["image.ngf=8", "image.ndf=8", "image.nz=16", "trunk.width=32", "trunk.depth=1", "train.log_every=1",
        "train.num_samples=4", "train.eval_every=0", *SPEECH_TINY]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(*args: object, precision: str = "no", cwd: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", precision, "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), *map(str, args)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=cwd)
    errors = [line for line in done.stderr.splitlines() if "Error" in line and "ChildFailedError" not in line]
    assert done.returncode == 0, "\n".join(errors[-5:]) or done.stderr[-3000:]
    return done


def settings(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    pack(ImageCodec(32), "image", "builtin:shapes", root / "img", shard_size=16, limit=64, progress=False)
    pack(SpeechCodec(2048, 22050), "speech", "builtin:speech", root / "sp", shard_size=16, limit=64, progress=False)
    return root


@pytest.mark.slow
def test_two_processes_train_image_and_speech_from_shards_in_bf16_and_resume(shards, tmp_path):
    run = tmp_path / "run"
    launch(WORKER, "train", tmp_path, "--plugin", "image", "--plugin", "speech", "--data", f"image={shards / 'img'}",
           "--data", f"speech={shards / 'sp'}", "--out", run, "--steps", 4, "--batch-size", 4, "--no-progress",
           *settings(*TINY, "train.checkpoint_every=2", "train.sample_every=2", "train.ema_decay=0.9",
                      "image.ema_decay=0.9"),
           precision="bf16")
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), f"{key} differs between the ranks"
    # the weights trained (the EMA lags the live generator) and the heads of both modalities are there
    assert not torch.equal(ranks[0]["G.heads.image.net.0.weight"], ranks[0]["ema.heads.image.net.0.weight"])
    assert any(k.startswith("G.heads.speech.") for k in ranks[0])
    # the EMA's BatchNorm statistics were recomputed for its own weights (SyncBatchNorm: same on every rank)
    stats = "buffer.heads.image.net.1.running_mean"
    assert not torch.equal(ranks[0][f"G.{stats}"], ranks[0][f"ema.{stats}"])

    # rank 0 alone wrote: one line per step, one sample file per modality and step, checkpoints
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3, 4]
    assert sorted(p.name for p in (run / "samples" / "image").iterdir()) == ["step_000002.png", "step_000004.png"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000002", "step_000004"]

    # resume the 2-process run with the documented command form (python -m mmgan): it continues like an
    # unbroken 2-process run of 6 steps (each rank's noise and data position come back)
    launch("-m", "mmgan", "run", "--resume", run, "--steps", 6, "--no-progress", precision="bf16")
    metrics = read_metrics(run)
    assert [r["step"] for r in metrics] == [1, 2, 3, 4, 5, 6]
    assert (run / "checkpoints" / "step_000006").is_dir()
    unbroken = tmp_path / "unbroken"
    launch("-m", "mmgan", "run", "--plugin", "image", "--plugin", "speech", "--data", f"image={shards / 'img'}",
           "--data", f"speech={shards / 'sp'}", "--out", unbroken, "--steps", 6, "--batch-size", 4, "--no-progress",
           *settings(*TINY, "train.checkpoint_every=2", "train.sample_every=2", "train.ema_decay=0.9",
                      "image.ema_decay=0.9"),
           precision="bf16")
    for a, b in zip(read_metrics(unbroken), metrics, strict=True):
        for key in a:
            if "/" in key:
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), (a["step"], key)


@pytest.mark.slow
@pytest.mark.parametrize("gradients", ["sum", "normalized"])
def test_two_processes_of_batch_b_give_the_gradients_of_one_process_of_batch_2b(tmp_path, gradients):
    # builtin data through Accelerate's sharded sampler: rank 0 takes the global batch's first B samples,
    # rank 1 the next B; one process with 2B takes all of them. SyncBatchNorm makes DCGAN's BatchNorm see the
    # global batch. lr_d ~ 0 keeps D unchanged between the D step and the G step, so G's gradients are
    # comparable too (Adam's first step moves every weight by +-lr whatever the gradient's size).
    # The speech mel loss is left out: at initialisation MelGAN's output is so quiet that its log-mel sits
    # at the log floor, where rounding-level differences between batch shapes switch the floor on or off
    # and change the mel gradient by ~0.5%; feature matching and the adversarial loss are compared.
    # trunk.gradients=normalized rescales each modality's gradient on the shared trunk block by norms that
    # must be those of the whole batch: the processes average the modalities' gradients before combining.
    # (A plain residual: a bounded block's gate starts at 0 and gives the block no gradient at step one.)
    common = ["--plugin", "image", "--plugin", "speech", "--steps", 1, "--no-progress",
              *settings(*TINY, "train.lr_d=1e-12", "speech.mel_weight=0", f"trunk.gradients={gradients}",
                       "trunk.residual=plain")]
    launch(WORKER, "grads", tmp_path, "--out", tmp_path / "two", "--batch-size", 4, *common)
    one = tmp_path / "one"
    one.mkdir()
    cmd = [sys.executable, WORKER, "grads", one, "--out", tmp_path / "single", "--batch-size", 8, *common]
    done = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (load_file(str(tmp_path / f"grads{r}.safetensors")) for r in range(2))
    single = load_file(str(one / "grads0.safetensors"))
    assert rank0.keys() == single.keys() and len(single) > 100
    for prefix in ("G.", "D."):
        keys = [k for k in single if k.startswith(prefix)]
        a = torch.cat([rank0[k].flatten() for k in keys])
        b = torch.cat([single[k].flatten() for k in keys])
        assert torch.equal(a, torch.cat([rank1[k].flatten() for k in keys]))
        assert b.norm() > 0
        assert (a - b).norm() <= 1e-5 * b.norm(), f"{prefix}: relative difference {((a - b).norm() / b.norm()):.2e}"
    if gradients != "sum":  # the remedy really ran: the shared block's gradient is not the plain sum
        plain = tmp_path / "plain"
        plain.mkdir()
        cmd = [sys.executable, WORKER, "grads", plain, "--out", tmp_path / "single-sum", "--batch-size", 8,
               *common, *settings("trunk.gradients=sum")]
        done = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        summed = load_file(str(plain / "grads0.safetensors"))
        shared = [k for k in single if k.startswith("G.trunk.blocks.0.")]
        assert shared and not all(torch.equal(summed[k], single[k]) for k in shared)
        assert all(torch.equal(summed[k], single[k]) for k in single if k.startswith("G.heads."))


# a run whose process-group teardown never returns (pytorch#75097: gloo's destroy_process_group can hang)
HANGING_TEARDOWN = """
import sys, threading, torch.distributed as dist
from accelerate.state import PartialState
from mmgan.engine import distributed
from mmgan.cli.commands import cli
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
PartialState.destroy_process_group = lambda self, group=None: threading.Event().wait()
distributed.TEARDOWN_WAIT = 2.0
cli(sys.argv[2:])
"""


@pytest.mark.slow
def test_a_hanging_process_group_teardown_does_not_keep_a_finished_run_from_exiting(tmp_path):
    from conftest import tiny_args

    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-c", HANGING_TEARDOWN, str(tmp_path / "rendezvous"), "run", "--plugin", "image",
           *tiny_args(run_dir, steps=2), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr
    assert "did not shut down within 2 s" in done.stderr
    assert f"run written to {run_dir}" in done.stdout
    assert (run_dir / "export").is_dir() and [r["step"] for r in read_metrics(run_dir)] == [1, 2]
