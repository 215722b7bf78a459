"""Image quality, one factor at a time: screening runs of mmgan variants and the bare DCGAN loop.

    # train every variant at every seed (resumable: a finished run is skipped, a broken one resumed)
    python benchmarks/image_ablation.py train --root runs/ablation --steps 2000 --seeds 0 1
    # score every run under every way of sampling it; one JSON line per (run, form) in ROOT/scores.jsonl
    python benchmarks/image_ablation.py score --root runs/ablation -n 2000
    python benchmarks/image_ablation.py table --root runs/ablation          # Markdown, mean over seeds

Forms of one trained run's generator, all scored by the image plugin's metrics on the same samples:
- ``best``: the export the run kept by ``image.select_by`` (what ``mmgan generate`` and ``mmgan eval``
  use when there is one);
- ``ema``: the last step's exported EMA weights, BatchNorm statistics as the export holds them;
- ``ema-recal``: the same weights, statistics recomputed (``recalibrate_batchnorm``, 16 batches of 64);
- ``ema-copied``: the EMA weights with the live generator's statistics (mmgan's export before
  recalibration existed);
- ``live``: the raw generator of the last checkpoint, running statistics (as pytorch/examples samples);
- ``live-recal``: the raw generator, statistics recomputed (what a run with ``train.ema_decay=0`` exports);
- ``ema-batch``: the EMA weights normalised by each sampled batch's own statistics (batches of 250).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from mmgan import checkpoint
from mmgan import config as cfg
from mmgan.api import get_modality, load_generator
from mmgan.engine import Trainer, batchnorm_layers, recalibrate_batchnorm
from mmgan.evaluation import EvalContext, ModalityGenerator, evaluate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine_header  # noqa: E402

HERE = Path(__file__).resolve().parent
# name -> --set overrides on top of `mmgan run --plugin image`; names starting with "bare" are
# quality_image.py's plain loop (no trunk, no Accelerate, no EMA), with these train-bare arguments
VARIANTS: dict[str, list[str]] = {
    "default": [],
    "depth0": ["trunk.depth=0"],
    "bare": ["--width", "512"],
    "w256-d1": ["trunk.width=256", "trunk.depth=1"],
    "depth1": ["trunk.depth=1"],
    "w256": ["trunk.width=256"],
    "w256-d0": ["trunk.width=256", "trunk.depth=0"],
    "bare-w256": ["--width", "256"],
    "lr01": ["trunk.lr_scale=0.1"],
    "w256-d1-lr01": ["trunk.width=256", "trunk.depth=1", "trunk.lr_scale=0.1"],
    "bounded": ["trunk.residual=bounded"],
    "w256-d1-bounded": ["trunk.width=256", "trunk.depth=1", "trunk.residual=bounded"],
    # the stabilisers, each alone on top of the defaults
    "sn": ["image.spectral_norm=true"],
    "r1": ["image.r1_gamma=1.0"],
    "diffaug": ["image.augment=color,translation,cutout"],
    "hinge": ["train.loss=hinge"],
    # the EMA generator (BatchNorm statistics recomputed for it) instead of the image default's live one
    "ema999": ["train.ema_decay=0.999"],
}
FORMS = ("best", "ema", "ema-copied", "ema-recal", "live", "live-recal", "ema-batch")


def run_dir(root: Path, variant: str, seed: int) -> Path:
    return root / f"{variant}-s{seed}"


def finished(run: Path, steps: int) -> bool:
    try:
        return checkpoint.read_export(run, "image", last=True)[1].get("step") == steps
    except Exception:  # no export yet, or a broken one: not finished
        return False


# the image defaults the screening started from (before issue 9): what every variant changes one thing of
OLD_DEFAULTS = ["trunk.width=512", "trunk.depth=2", "trunk.residual=plain", "image.trunk_depth=-1",
                "train.ema_decay=0.999"]


def train(args: argparse.Namespace) -> None:
    if args.old_defaults:
        args.set = [*OLD_DEFAULTS, *args.set]
    torch.set_num_threads(args.threads)
    machine_header(args.threads)
    root = Path(args.root)
    for seed in args.seeds:
        for variant in args.variants:
            run = run_dir(root, variant, seed)
            if finished(run, args.steps):
                continue
            started = time.perf_counter()
            if variant.startswith("bare"):
                subprocess.run([sys.executable, str(HERE / "quality_image.py"), "train-bare", "--out", str(run),
                                "--steps", str(args.steps), "--seed", str(seed), "--threads", str(args.threads),
                                "--data", args.data, *VARIANTS[variant]], check=True, stdout=subprocess.DEVNULL)
            else:
                resume = bool(checkpoint.checkpoint_dirs(run))
                # --set is the base every variant starts from (the variant's own settings win)
                overrides = [*args.set, *VARIANTS[variant], "train.eval_every=0"]
                if resume:
                    config = cfg.resolve(get_modality, resume_dir=run, steps=args.steps)
                else:
                    config = cfg.resolve(get_modality, plugins=("image",), out=run, steps=args.steps, seed=seed,
                                         data=[f"image={args.data}"], overrides=overrides)
                Trainer(config, resume=resume, progress=False).fit()
            print(json.dumps({"run": str(run), "seconds": round(time.perf_counter() - started, 1)}), flush=True)


def forms_of(run: Path) -> dict[str, torch.nn.Module]:
    """Every form of the run's generator that its files allow."""
    ema, config = load_generator(run, "image", last=True)
    forms = {"ema": ema}
    if (run / "export" / "best").is_dir():
        forms["best"] = load_generator(run, "image")[0]
    live_file = None
    ckpts = checkpoint.checkpoint_dirs(run)
    if ckpts:
        live_file = ckpts[-1] / "model.safetensors"
    if live_file is not None and live_file.is_file():
        live = copy.deepcopy(ema)
        live.load_state_dict(load_file(str(live_file)), strict=True)
        forms["live"] = live.eval()
        copied = copy.deepcopy(ema)
        buffers = dict(live.named_buffers())
        for name, buf in copied.named_buffers():
            buf.copy_(buffers[name])
        forms["ema-copied"] = copied
    elif (Path(f"{run}-ema") / "export").is_dir() and not run.name.endswith("-ema"):
        forms["live"] = ema  # the bare loop exports its raw generator as the run itself
        forms["ema"] = load_generator(Path(f"{run}-ema"), "image")[0]
    for source, name in (("ema", "ema-recal"), ("live", "live-recal")):
        if source not in forms:
            continue
        recal = copy.deepcopy(forms[source])
        gen = torch.Generator().manual_seed(1234)
        inputs = [torch.randn(64, config.nz, generator=gen) for _ in range(16)]
        recalibrate_batchnorm(lambda z, recal=recal: recal("image", z), batchnorm_layers(recal), inputs)
        forms[name] = recal.eval()
    forms["ema-batch"] = copy.deepcopy(forms["ema"]).train()
    return forms


def score(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    machine_header(args.threads)
    root = Path(args.root)
    out = root / "scores.jsonl"
    done = set()
    if out.exists():
        done = {(r["run"], r["form"], r["n"]) for r in map(json.loads, out.read_text().splitlines())}
    modality = get_modality("image")
    for run in sorted(p for p in root.iterdir() if (p / "export").is_dir() and not p.name.endswith("-ema")):
        if not finished(run, args.steps):
            continue
        todo = [f for f in args.forms if (run.name, f, args.n) not in done]
        if not todo:
            continue
        _, config = load_generator(run, "image")
        forms = forms_of(run)
        for form in todo:
            if form not in forms:
                continue
            started = time.perf_counter()
            ctx = EvalContext(modality=modality, config=config, generator=ModalityGenerator(forms[form], "image"),
                              data=args.data, num_samples=args.n, batch_size=250, seed=0)
            metrics = evaluate(ctx)
            record = {"run": run.name, "form": form, "n": args.n, "step": args.steps, **metrics,
                      "seconds": round(time.perf_counter() - started, 1)}
            with out.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)


def table(args: argparse.Namespace) -> None:
    rows = [json.loads(line) for line in (Path(args.root) / "scores.jsonl").read_text().splitlines()]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r["n"] != args.n:
            continue
        variant = r["run"].rsplit("-s", 1)[0]
        groups.setdefault((variant, r["form"]), []).append(r)
    cols = ("fd", "swd", "kid", "recall", "mode_coverage")
    print("| variant | form | seeds | " + " | ".join(f"{c} (each seed)" for c in cols) + " |")
    print("|:--|:--|--:|" + "--:|" * len(cols))
    for (variant, form), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["run"])
        cells = []
        for c in cols:
            values = [r[c] for r in rs]
            cells.append(f"{sum(values) / len(values):.3g} ({', '.join(f'{v:.3g}' for v in values)})")
        print(f"| {variant} | {form} | {len(rs)} | " + " | ".join(cells) + " |")


@torch.no_grad()
def trunk_stats(args: argparse.Namespace) -> None:
    """How big each trunk block's branch is next to its input, for the live generator of each run."""
    torch.manual_seed(0)
    print("| run | block | input norm per token | branch norm per token | input spread over samples | "
          "branch spread over samples | gate |")
    print("|:--|--:|--:|--:|--:|--:|--:|")
    for run in map(Path, args.runs):
        generator, config = load_generator(run, "image", last=True)
        generator.load_state_dict(load_file(str(checkpoint.checkpoint_dirs(run)[-1] / "model.safetensors")))
        generator.eval()
        tokens = generator.stems["image"](torch.randn(256, config.nz))
        trunk, film = generator.trunk, generator.trunk.film["image"]
        gates = trunk.gate.get("image", None)
        for i, block in enumerate(trunk.blocks[: generator.depths["image"]] if generator.depths["image"] >= 0
                                  else trunk.blocks):
            gate = None if gates is None else gates[i]
            out = block(tokens, film[i], gate)
            branch = out - tokens
            print(f"| {run.name} | {i} | {tokens.norm(dim=1).mean():.2f} | {branch.norm(dim=1).mean():.2f} | "
                  f"{tokens.std(0).mean():.3f} | {branch.std(0).mean():.3f} | "
                  f"{'-' if gate is None else f'{gate.item():.3f}'} |")
            tokens = out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--root", required=True)
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    t.add_argument("--variants", nargs="+", default=list(VARIANTS))
    t.add_argument("--set", action="append", default=[],
                   help="the base of every mmgan variant, before its own settings (repeatable)")
    t.add_argument("--old-defaults", action="store_true",
                   help="start every variant from the defaults before issue 9 (the screening's baseline)")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--data", default="builtin:shapes", help="the image data of every run (default builtin:shapes)")
    s = sub.add_parser("score")
    s.add_argument("--root", required=True)
    s.add_argument("-n", type=int, default=2000)
    s.add_argument("--steps", type=int, default=2000, help="score only runs finished at this step")
    s.add_argument("--forms", nargs="+", default=list(FORMS), choices=FORMS, help="which forms (default all)")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--data", default="builtin:shapes", help="the real images scored against (default builtin:shapes)")
    tb = sub.add_parser("table")
    tb.add_argument("--root", required=True)
    tb.add_argument("-n", type=int, default=2000)
    ts = sub.add_parser("trunk-stats", help="each trunk block's branch against its input (live generator)")
    ts.add_argument("runs", nargs="+")
    args = parser.parse_args()
    {"train": train, "score": score, "table": table, "trunk-stats": trunk_stats}[args.command](args)


if __name__ == "__main__":
    main()
