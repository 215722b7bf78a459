"""Run under `accelerate launch` by tests/test_distributed.py: trains, then dumps what each rank holds.

    dist_worker.py train OUT [mmgan run options...]   fit, then OUT/rank<r>.safetensors: G, D and EMA weights
    dist_worker.py grads OUT [mmgan run options...]   one step, then OUT/grads<r>.safetensors: G and D gradients
    dist_worker.py cli OUT [mmgan arguments...]         OUT/pid<r> (this process's pid), then the real `mmgan` command
    dist_worker.py watch OUT VICTIM HOW               all-reduces in RankWatch (a bare gloo group); at step 3 rank
                                                      VICTIM dies (HOW=kill) or freezes (HOW=stop)

In "grads" mode the image generator's input is a fixed function of each real sample instead of fresh
noise, so that a 2-process step and a 1-process step see the same inputs for the same samples.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from mmgan import config as cfg
from mmgan.cli.commands import run as run_command
from mmgan.contract.manager import get_modality
from mmgan.data.shards import ShardStream
from mmgan.engine import Trainer


def noise_from_sample(real: torch.Tensor, config: object, generator: torch.Generator) -> torch.Tensor:
    """A deterministic stand-in for noise: a fixed random projection of each image to nz values."""
    flat = real.reshape(real.shape[0], -1).float()
    projection = torch.randn(flat.shape[1], config.nz, generator=torch.Generator().manual_seed(7))
    return flat @ projection.to(flat.device) / flat.shape[1] ** 0.5


def build(argv: list[str], resume: bool = False) -> Trainer:
    ctx = run_command.make_context("run", argv)
    p = ctx.params
    config = cfg.resolve(get_modality, plugins=p["plugins"], data=p["data"], steps=p["steps"],
                         batch_size=p["batch_size"], seed=p["seed"], out=p["out"], overrides=p["overrides"])
    return Trainer(config, resume=resume, progress=False)


def flat(module: torch.nn.Module, grads: bool = False) -> dict[str, torch.Tensor]:
    out = {}
    for key, param in module.named_parameters():
        value = param.grad if grads else param
        if value is not None:
            out[key] = value.detach().float().cpu().contiguous()
    if not grads:
        out.update({f"buffer.{k}": v.detach().float().cpu().contiguous() for k, v in module.named_buffers()})
    return out


def main(mode: str, out: str, argv: list[str]) -> None:
    trainer = build(argv)
    acc = trainer.accelerator
    rank = acc.process_index
    if mode == "train":
        opened: dict[int, list[str]] = {}
        raw = ShardStream._raw

        def recording(self: ShardStream, urls: list[str], rng: object) -> object:
            opened.setdefault(id(self), []).extend(urls)
            return raw(self, urls, rng)

        ShardStream._raw = recording  # num_workers=0: the shards are read in this process
        trainer.fit()  # ends with the process group gone: no collective after this
        shards = {name: {"rank": ds.rank, "world": ds.world_size, "local": acc.local_process_index,
                         "assigned": ds.assignment(0, 1)[1], "opened": sorted(set(opened.get(id(ds), [])))}
                  for name, ds in trainer.datasets.items() if isinstance(ds, ShardStream)}
        (Path(out) / f"shards{rank}.json").write_text(json.dumps(shards))
        tensors = {f"G.{k}": v for k, v in flat(acc.unwrap_model(trainer.G)).items()}
        tensors.update({f"D.{k}": v for k, v in flat(trainer.D_module).items()})
        tensors.update({f"ema.{k}": v for k, v in flat(trainer.ema).items()})
        save_file(tensors, str(Path(out) / f"rank{rank}.safetensors"))
    elif mode == "grads":
        if "image" in trainer.modalities:
            trainer.modalities["image"] = dataclasses.replace(trainer.modalities["image"], make_input=noise_from_sample)
        batches = trainer.batches()
        trainer.train_step(batches)
        tensors = {f"G.{k}": v for k, v in flat(acc.unwrap_model(trainer.G), grads=True).items()}
        tensors.update({f"D.{k}": v for k, v in flat(trainer.D_module, grads=True).items()})
        save_file(tensors, str(Path(out) / f"grads{rank}.safetensors"))
        acc.wait_for_everyone()
        acc.end_training()
    else:
        raise SystemExit(f"unknown mode {mode!r}")


def run_cli(out: str, argv: list[str]) -> None:
    """The real `mmgan` command line (what users run), once this process's pid is in OUT/pid<rank>. With
    MMGAN_TEST_SLOW=evaluate|save_checkpoint, rank 0 writes OUT/in_<phase> and waits 5 s when it enters that
    phase after step 2 (so that a test can kill a machine during it)."""
    (Path(out) / f"pid{os.environ.get('RANK', '0')}").write_text(str(os.getpid()))
    from mmgan.cli.commands import main as cli_main

    phase = os.environ.get("MMGAN_TEST_SLOW")
    if phase and os.environ.get("RANK") == "0":
        real = getattr(Trainer, phase)

        def slow(self: Trainer, *args: object) -> object:
            if self.step > 2:
                (Path(out) / f"in_{phase}").write_text(str(self.step))
                time.sleep(5)
            return real(self, *args)

        setattr(Trainer, phase, slow)

    sys.argv = ["mmgan", *argv]
    cli_main()


def watch(out: str, victim: int, how: str) -> None:
    """RankWatch around all-reduces in a bare gloo group (MASTER_ADDR/PORT, RANK, WORLD_SIZE from the test):
    at step 3 rank ``victim`` writes the time to OUT/stopped and kills or stops itself; the others end
    with one "Error:" line, as the CLI prints it (raised, or from the heartbeat thread)."""
    import torch.distributed as dist

    from mmgan.engine.rankwatch import RankLost, RankWatch

    dist.init_process_group("gloo")
    rank, step = dist.get_rank(), 0
    try:
        with RankWatch(Path(out) / "run", lambda: step):
            for step in range(1, 2000):  # noqa: B007 - the lambda reads it
                dist.all_reduce(torch.ones(1))
                if step == 3 and rank == victim:
                    (Path(out) / "stopped").write_text(str(time.time()))
                    os.kill(os.getpid(), signal.SIGKILL if how == "kill" else signal.SIGSTOP)
                time.sleep(0.05)
    except RankLost as exc:
        sys.stderr.write(f"Error: {exc}\n")
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1] == "cli":
        run_cli(sys.argv[2], sys.argv[3:])
    elif sys.argv[1] == "watch":
        watch(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main(sys.argv[1], sys.argv[2], sys.argv[3:])
