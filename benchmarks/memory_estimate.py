"""How close the memory check's estimate of a run is to what the run really holds (issue 26, faults row 27).

    python benchmarks/memory_estimate.py                 # image at trunk widths 2048 and 4096, speech at 2048
    python benchmarks/memory_estimate.py --case image:trunk.width=8192 --steps 2

Each case trains in a fresh process (``Trainer(config).fit()``, built-in data, the defaults but for the
case's settings, ``--steps`` steps with a checkpoint and the export at the last, no evaluation). That process
samples its own RssAnon (/proc/self/status: heap and tensors, not the shared libraries' pages) every 5 ms in
a thread. "held" is the peak RssAnon less RssAnon just before the Trainer was built (what importing torch and
resolving the config already took, which the check does not count: it compares with the memory still
available then). "estimate" is what the check adds up for the same config (``training_parts``: weights,
gradients, Adam's moments and its update's temporary, and the EMA generator). "at" says where the peak
was: building, the training steps, the EMA generator's BatchNorm statistics, the checkpoint's state files, the
export, or the rest of the checkpoint ("-": a phase the run did not enter).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from harness import machine_header

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("build", "steps", "ema", "state", "export", "checkpoint")
CASES = ("image:trunk.width=2048", "image:trunk.width=4096", "speech:trunk.width=2048")

CHILD = textwrap.dedent("""
    import json, sys, tempfile, threading, time
    from pathlib import Path
    from mmgan import config as cfg
    from mmgan.contract.manager import get_modality, get_plugin_manager
    from mmgan.engine import Trainer
    from mmgan.engine.build import training_parts

    def anon():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
        return 0

    plugin, overrides, steps = sys.argv[1], sys.argv[2:-1], int(sys.argv[-1])
    out = Path(tempfile.mkdtemp()) / "run"
    config = cfg.resolve(get_modality, plugins=[plugin], out=out, steps=steps, overrides=[
        *overrides, f"train.checkpoint_every={steps}", "train.sample_every=100000", "train.eval_every=0"])
    estimate = sum(part.need for part in training_parts(get_plugin_manager(), config))
    peaks = {"build": 0, "steps": 0, "checkpoint": 0, "ema": 0, "state": 0, "export": 0}
    phase = ["build"]
    done = threading.Event()

    def sample():
        while not done.wait(0.005):
            peaks[phase[0]] = max(peaks[phase[0]], anon())

    base = anon()
    threading.Thread(target=sample, daemon=True).start()
    trainer = Trainer(config, progress=False)
    real_step, real_save = trainer.train_step, trainer.save_checkpoint

    def train_step(batches):
        phase[0] = "steps"
        return real_step(batches)

    def save_checkpoint():
        phase[0] = "checkpoint"
        return real_save()

    trainer.train_step, trainer.save_checkpoint = train_step, save_checkpoint

    def during(name, call):
        def wrapped(*args, **kwargs):
            before, phase[0] = phase[0], name
            try:
                return call(*args, **kwargs)
            finally:
                phase[0] = before
        return wrapped

    import mmgan.engine.resume as resume
    trainer.prepare_ema = during("ema", trainer.prepare_ema)
    trainer.export = during("export", trainer.export)
    trainer.accelerator.save_state = during("state", trainer.accelerator.save_state)
    resume.checkpoint.write_extra_state = during("state", resume.checkpoint.write_extra_state)
    trainer.fit()
    done.set()
    peaks[phase[0]] = max(peaks[phase[0]], anon())
    at = max(peaks, key=peaks.get)
    print(json.dumps({"estimate": estimate, "base": base, "held": peaks[at] - base, "at": at,
                      "phases": {k: v - base if v else 0 for k, v in peaks.items()}, "batch": config.train.batch_size}))
""")


def run_case(case: str, steps: int, threads: int) -> dict[str, object]:
    plugin, _, rest = case.partition(":")
    overrides = [item for item in rest.split(",") if item]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", CHILD, plugin, *overrides, str(steps)], capture_output=True,
                          text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{case} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append", help="PLUGIN:KEY=VALUE,KEY=VALUE (repeatable)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    machine_header(args.threads)
    print("| case | batch | estimate MiB | held MiB | estimate / held | peak at | " + " / ".join(PHASES) + " MiB |")
    print("|---|---|---|---|---|---|---|")
    for case in args.case or CASES:
        r = run_case(case, args.steps, args.threads)
        phases = " / ".join(f"{r['phases'][k] / 2**20:.0f}" if r["phases"][k] > 0 else "-" for k in PHASES)
        print(f"| {case} | {r['batch']} | {r['estimate'] / 2**20:.0f} | {r['held'] / 2**20:.0f} | "
              f"{r['estimate'] / r['held']:.2f} | {r['at']} | {phases} |", flush=True)


if __name__ == "__main__":
    main()
