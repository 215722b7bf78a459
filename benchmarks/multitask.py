"""Does sharing the trunk help? Image alone, speech alone, both in one run, and each seeded from the other's
trunk, at equal steps per modality, scored with `mmgan eval`.

    PYTHONPATH=.:plugins python benchmarks/multitask.py train --root runs/multitask --seeds 0 1
    PYTHONPATH=.:plugins python benchmarks/multitask.py score --root runs/multitask
    PYTHONPATH=.:plugins python benchmarks/multitask.py table --root runs/multitask

Contenders, each with the modalities' defaults (docs/multitask.md: in a run of both each keeps its own
steps, batch and optimiser, so "equal steps" holds by construction):

    image               mmgan run --plugin image
    speech              mmgan run --plugin speech
    both                mmgan run --plugin image --plugin speech
    speech<-image       mmgan run --plugin speech --init-trunk <image run of the same seed>
    speech<-image-frozen  the same with --freeze-trunk (only FiLM and gates adapt the image trunk)
    image<-speech       mmgan run --plugin image --init-trunk <speech run of the same seed>

Remedies for negative transfer, trained only when named (``--contenders both-pcgrad both-normalized
both-image-unshared``): the run of both with ``trunk.gradients=pcgrad``, ``=normalized``, or image sharing
no trunk block (``image.trunk_depth=0``). A control, also trained only when named: ``image-fp32``, image
alone in fp32 as the run of both trains it (``train.mixed_precision=auto`` picks bf16 for image alone on a
CPU with native bf16, fp32 for any run with speech).

`train` runs what is missing and resumes what was stopped (`mmgan run --resume`), one run at a time, its
wall clock and peak memory kept in RUN.time (`/usr/bin/time -v`). `score` runs `mmgan eval` on every
finished run, per modality (with its wall clock and its training steps' CPU time): image on 5000
samples (FD, SWD, KID, precision, recall, coverage), speech on its default held-out clips (mel L1,
MR-STFT, MCD, PESQ, STOI); results in ROOT/scores.jsonl. `table` prints the mean and range over seeds
per contender and measure, and each contender's difference from the single-task run of its modality on
the main measure (image FD, speech MCD) against that run's seed-to-seed spread, and every other measure on
which it is worse by more than that spread (issue 14's "no worse beyond the spread on the others").
`--set KEY=VALUE` (repeatable) applies to every run (the tests train tiny networks for a few steps this
way).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from datetime import datetime
from pathlib import Path

# contender -> (modalities, the run whose trunk it starts from (a contender name), frozen)
CONTENDERS: dict[str, tuple[list[str], str | None, bool]] = {
    "image": (["image"], None, False),
    "speech": (["speech"], None, False),
    "both": (["image", "speech"], None, False),
    "speech<-image": (["speech"], "image", False),
    "speech<-image-frozen": (["speech"], "image", True),
    "image<-speech": (["image"], "speech", False),
}
# the remedies for negative transfer (docs/multitask.md): the run of both with one setting changed, trained
# only when named (--contenders both-pcgrad ...), tabulated beside the others
REMEDIES: dict[str, list[str]] = {
    "both-pcgrad": ["trunk.gradients=pcgrad"],
    "both-normalized": ["trunk.gradients=normalized"],
    "both-image-unshared": ["image.trunk_depth=0"],
}
CONTENDERS.update({name: CONTENDERS["both"] for name in REMEDIES})
# controls, trained only when named: image alone in fp32, as the run of both trains it (speech is not measured
# in bf16, so `mixed_precision = "auto"` gives the joint run fp32 and image alone bf16 on a CPU that has it)
CONTROLS: dict[str, list[str]] = {"image-fp32": ["train.mixed_precision=no"]}
CONTENDERS["image-fp32"] = CONTENDERS["image"]
EXTRA_SETTINGS = {**REMEDIES, **CONTROLS}
DEFAULT_CONTENDERS = [name for name in CONTENDERS if name not in EXTRA_SETTINGS]
MAIN = {"image": "fd", "speech": "mcd_db"}  # each modality's main measure (issue 14)
LOWER_IS_BETTER = {"fd", "swd", "kid", "mel_l1", "mrstft", "mcd_db"}
SHOWN = {"image": ("fd", "swd", "kid", "mode_coverage"), "speech": ("mel_l1", "mcd_db", "pesq_wb", "stoi")}
# the measures issue 14's "no worse beyond the spread on the others" is checked on (every one with a direction)
CHECKED = {"image": ("fd", "swd", "kid", "precision", "recall", "mode_coverage"),
           "speech": ("mcd_db", "mel_l1", "mrstft", "pesq_wb", "stoi")}


def run_dir(root: Path, contender: str, seed: int) -> Path:
    return root / f"{contender.replace('<-', '-from-')}-s{seed}"


def finished(run: Path) -> bool:
    facts = run / "run.json"
    if not facts.is_file():
        return False
    sessions = json.loads(facts.read_text(encoding="utf-8")).get("sessions", [])
    return bool(sessions) and sessions[-1].get("status") == "finished"


def mmgan(*args: str) -> list[str]:
    return [sys.executable, "-m", "mmgan", *args]


def train(args: argparse.Namespace) -> None:
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    timer = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    for seed in args.seeds:
        for contender in args.contenders:
            modalities, source, frozen = CONTENDERS[contender]
            run = run_dir(root, contender, seed)
            if finished(run):
                continue
            # a setting of a modality this run does not train is left out (image.* in a speech run)
            sets = [item for setting in args.set
                    if setting.split(".", 1)[0] not in ("image", "speech") or setting.split(".", 1)[0] in modalities
                    for item in ("--set", setting)]
            if (run / "config.toml").is_file():
                command = mmgan("run", "--resume", str(run), "--no-progress")
            else:
                command = mmgan("run", *(a for m in modalities for a in ("--plugin", m)), "--seed", str(seed),
                                "--out", str(run), "--no-progress", *sets,
                                *(a for item in EXTRA_SETTINGS.get(contender, []) for a in ("--set", item)))
                if source is not None:
                    command += ["--init-trunk", str(run_dir(root, source, seed))]
                    command += ["--freeze-trunk"] if frozen else []
            if timer is not None:
                command = [timer, "-v", "-o", str(run.with_suffix(".time")), "-a", *command]
            print(" ".join(command), flush=True)
            if not args.dry_run:
                subprocess.run(command, check=True)


def score(args: argparse.Namespace) -> None:
    root = Path(args.root)
    out = root / "scores.jsonl"
    done = set()
    if out.exists():
        done = {(r["run"], r["modality"]) for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    for seed in args.seeds:
        for contender in args.contenders:
            run = run_dir(root, contender, seed)
            if not finished(run):
                continue
            for modality in CONTENDERS[contender][0]:
                if (run.name, modality) in done:
                    continue
                report = run / f"eval-{modality}.json"
                num = dict(item.split("=", 1) for item in args.num).get(modality)
                command = mmgan("eval", str(run), "--modality", modality, "--out", str(report), "--no-memorisation",
                                *(["-n", num] if num else []))
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
                metrics = json.loads(report.read_text(encoding="utf-8"))["metrics"]
                record = {"run": run.name, "contender": contender, "seed": seed, "modality": modality,
                          "metrics": metrics, "wall_s": wall_seconds(run), "train_cpu_s": train_cpu_seconds(run)}
                with out.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
                print(json.dumps(record), flush=True)


def wall_seconds(run: Path) -> float | None:
    """The run's wall clock over all its sessions, from run.json's start and end times."""
    facts = run / "run.json"
    if not facts.is_file():
        return None
    total = 0.0
    for session in json.loads(facts.read_text(encoding="utf-8")).get("sessions", []):
        if session.get("started") and session.get("ended"):
            start, end = (datetime.strptime(session[k], "%Y-%m-%dT%H:%M:%SZ") for k in ("started", "ended"))
            total += (end - start).total_seconds()
    return total or None


def train_cpu_seconds(run: Path) -> float | None:
    """The CPU seconds of the run's training steps (metrics.jsonl's last ``train_cpu_s``: no sampling or
    evaluation): the cost that another job on the machine inflates least."""
    metrics = run / "metrics.jsonl"
    last = None
    if metrics.is_file():
        for line in metrics.read_text(encoding="utf-8").splitlines():
            last = json.loads(line).get("train_cpu_s", last)
    return last


def table(args: argparse.Namespace) -> None:
    rows = [json.loads(line) for line in (Path(args.root) / "scores.jsonl").read_text(encoding="utf-8").splitlines()]
    by: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        by.setdefault((r["modality"], r["contender"]), []).append(r)
    for modality, measures in SHOWN.items():
        single = by.get((modality, modality), [])
        print(f"\n{modality} (mean over seeds (each seed); single-task spread = its max - min)\n")
        print("| contender | seeds | " + " | ".join(measures) + " | wall min | train CPU min | main vs single-task "
              "| others worse beyond the spread |")
        print("|:--|--:|" + "--:|" * (len(measures) + 3) + ":--|")
        for (mod, contender), rs in sorted(by.items(), key=lambda kv: list(CONTENDERS).index(kv[0][1])):
            if mod != modality:
                continue
            rs = sorted(rs, key=lambda r: r["seed"])
            cells = []
            for m in measures:
                values = [r["metrics"].get(m) for r in rs if r["metrics"].get(m) is not None]
                cells.append(f"{statistics.mean(values):.3g} ({', '.join(f'{v:.3g}' for v in values)})"
                             if values else "n/a")
            walls = [r["wall_s"] / 60 for r in rs if r.get("wall_s")]
            wall = f"{statistics.mean(walls):.1f}" if walls else "n/a"
            cpus = [r["train_cpu_s"] / 60 for r in rs if r.get("train_cpu_s")]
            wall += f" | {statistics.mean(cpus):.1f}" if cpus else " | n/a"
            verdict = compare(rs, single, MAIN[modality]) if contender != modality else "-"
            others = "-" if contender == modality else ", ".join(
                worse_beyond_spread(rs, single, [m for m in CHECKED[modality] if m != MAIN[modality]])) or "none"
            print(f"| {contender} | {len(rs)} | " + " | ".join(cells) + f" | {wall} | {verdict} | {others} |")


def difference(rows: list[dict], single: list[dict], measure: str) -> tuple[float, bool, float] | None:
    """``rows``' mean on ``measure`` minus single-task's, whether that is better, and single-task's
    seed-to-seed spread (max - min); None where either side lacks the measure."""
    ours = [r["metrics"][measure] for r in rows if r["metrics"].get(measure) is not None]
    theirs = [r["metrics"][measure] for r in single if r["metrics"].get(measure) is not None]
    if not ours or not theirs:
        return None
    diff = statistics.mean(ours) - statistics.mean(theirs)
    return diff, (diff < 0 if measure in LOWER_IS_BETTER else diff > 0), max(theirs) - min(theirs)


def worse_beyond_spread(rows: list[dict], single: list[dict], measures: list[str]) -> list[str]:
    """Each of ``measures`` on which ``rows`` are worse than single-task by more than its spread, as
    "name (+diff)"."""
    found = [(m, difference(rows, single, m)) for m in measures]
    return [f"{m} ({d[0]:+.3g})" for m, d in found if d is not None and not d[1] and abs(d[0]) > d[2]]


def compare(rows: list[dict], single: list[dict], measure: str) -> str:
    """The mean difference on ``measure`` from single-task, and whether it is beyond single-task's spread."""
    found = difference(rows, single, measure)
    if found is None:
        return "n/a"
    diff, better, spread = found
    word = "better" if better else "worse"
    return f"{diff:+.3g} ({word}{', beyond' if abs(diff) > spread else ', within'} the spread {spread:.3g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "score", "table"):
        p = sub.add_parser(name)
        p.add_argument("--root", required=True)
        p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
        p.add_argument("--contenders", nargs="+", default=DEFAULT_CONTENDERS, choices=list(CONTENDERS))
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
        p.add_argument("--num", action="append", default=[], metavar="MODALITY=N",
                       help="score: mmgan eval -n N for that modality (default: its full evaluation)")
        p.add_argument("--dry-run", action="store_true", help="train: print the commands, run none")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    {"train": train, "score": score, "table": table}[args.command](args)


if __name__ == "__main__":
    main()
