"""What the collapse watchdog finds in runs that were trained, replayed from their metrics.jsonl (issue 29).

    python benchmarks/collapse_watch.py RUN[:ONSET] ...     # ONSET: the step a collapse was provoked at

The watchdog's loss signals judge the logged losses, and its diversity signal the logged
``<modality>/watch/diversity`` (the probe the run measured while it trained), so replaying a run's
metrics.jsonl through :class:`mmgan.engine.watchdog.CollapseWatch`, with the run's settings from its
config.toml (its adversarial loss's levels, ``adversarial_start``, window, interval), finds what the live
watchdog of this version finds: the same code, fed the same numbers. A run trained before a signal's level
changed is judged by today's levels. For each finding: the signal, the step found, the onset it names and,
given the provoked ONSET, the delay as a share of the run's steps (the goal: within 10%).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mmgan.api import get_plugin_manager  # noqa: E402
from mmgan.config import read_toml  # noqa: E402
from mmgan.engine import build_watch, watch_settings  # noqa: E402


def replay(run: Path) -> tuple[list, int]:
    """The collapses the watchdog finds in ``run``'s metrics.jsonl, and the run's step count."""
    settings = read_toml(run / "config.toml")
    train = {"steps": 2000, "log_every": 10, "on_collapse": "warn", "collapse_window": 0, "collapse_every": 0,
             "collapse_diversity": 0.2, "loss": "nonsaturating", **settings.get("train", {})}
    names = settings["run"]["modalities"]
    config = SimpleNamespace(train=SimpleNamespace(**train), run=SimpleNamespace(modalities=names),
                             modalities={m: SimpleNamespace(**settings.get(m, {})) for m in names})
    found_losses = {}
    get_plugin_manager().hook.mmgan_register_losses(register=found_losses.__setitem__)
    losses = {m: found_losses[settings.get(m, {}).get("loss") or train["loss"]] for m in names}
    watch = build_watch(config, losses)
    _, every = watch_settings(config)
    found = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        step = row["step"]
        if any(k.endswith("/adv") for k in row):
            watch.observe_losses(step, row)
        for m in names:
            if f"{m}/watch/diversity" in row:
                watch.observe_diversity(step, m, row[f"{m}/watch/diversity"])
        if step % every == 0 and any(f"{m}/watch/diversity" in row for m in names):
            found += watch.check(step)
    return found, train["steps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN[:ONSET]")
    args = parser.parse_args()
    print("| run | provoked at | signal | found at | onset named | delay (share of the run's steps) |")
    print("|---|---|---|---|---|---|")
    for spec in args.runs:
        path, _, onset = spec.partition(":")
        found, steps = replay(Path(path))
        if not found:
            print(f"| {Path(path).name} | {onset or '-'} | none | - | - | - |")
        for c in found:
            delay = f"{c.step - int(onset)} ({(c.step - int(onset)) / steps:.1%})" if onset else "-"
            print(f"| {Path(path).name} | {onset or '-'} | {c.signal} ({c.value:.3g}, level {c.threshold:.3g}) | "
                  f"{c.step} | {c.onset} | {delay} |")


if __name__ == "__main__":
    main()
