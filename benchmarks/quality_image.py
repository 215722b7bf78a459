"""Image quality: mmgan's default image run against a bare DCGAN loop, same networks, steps and data.

    # 1. the bare baseline: the image plugin's DCGAN stem -> head (no trunk) and discriminator in a
    #    plain PyTorch loop (pytorch/examples dcgan style), same steps, batch, lr, betas, data, seed
    OMP_NUM_THREADS=1 python benchmarks/quality_image.py train-bare --out runs/bare-dcgan
    # 2. the same metrics, samples and seeds for every run given (mmgan eval's logic)
    python benchmarks/quality_image.py compare runs/image-default runs/bare-dcgan runs/bare-dcgan-ema -n 5000
    # 3. which classes each run produces (the counts behind mode_coverage)
    python benchmarks/quality_image.py classes runs/image-default runs/bare-dcgan runs/bare-dcgan-ema

``train-bare`` writes two exports in mmgan's format (a trunk of depth 0 is the identity, so
``head(stem(z))`` is exactly the paper's generator): ``--out`` holds the raw generator, as
pytorch/examples evaluates it, and ``--out``-ema an EMA copy with mmgan's EMA schedule, which separates
what EMA buys from what the trunk and engine do. ``compare`` prints a Markdown table.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from mmgan import __version__
from mmgan.checkpoint import export_generator
from mmgan.engine import ema_decay
from mmgan.trunk import TrunkConfig
from mmgan_image.datasets import ShapesDataset, open_image_source
from mmgan_image.networks import DCGANDiscriminator, DCGANHead, DCGANStem
from mmgan_image.plugin import ImageConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine_header  # noqa: E402


class BareGenerator(nn.Module):
    """z -> DCGANStem -> DCGANHead: the paper's generator, no trunk."""

    def __init__(self, config: ImageConfig, width: int) -> None:
        super().__init__()
        self.stem = DCGANStem(config.nz, width)
        self.head = DCGANHead(width, config.ngf, config.image_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.stem(z))


def export_bare(generator: BareGenerator, run_dir: Path, config: ImageConfig, width: int, step: int) -> None:
    """Write ``generator`` as an mmgan export with a depth-0 trunk, so ``mmgan eval`` reads it."""
    state = {f"stems.image.{k}": v for k, v in generator.stem.state_dict().items()}
    state |= {f"heads.image.{k}": v for k, v in generator.head.state_dict().items()}
    state["trunk.film.image"] = torch.zeros(0, 2, width)
    state = {k: v.detach().clone().contiguous() for k, v in state.items()}
    trunk = asdict(TrunkConfig(width=width, depth=0, residual="plain"))  # no blocks: no gates either
    meta = {"mmgan_version": __version__, "modality": "image", "step": step, "config": asdict(config),
            "trunk": trunk, "note": "bare DCGAN loop, benchmarks/quality_image.py"}
    export_generator(run_dir / "export", "image", state, meta)


def train_bare(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    machine_header(args.threads)
    torch.manual_seed(args.seed)
    config = ImageConfig(image_size=args.image_size)
    netG, netD = BareGenerator(config, args.width), DCGANDiscriminator(config.ndf, config.image_size)
    ema = copy.deepcopy(netG).eval().requires_grad_(False)
    optimizerG = torch.optim.Adam(netG.parameters(), lr=args.lr, betas=(args.beta1, args.beta2))
    optimizerD = torch.optim.Adam(netD.parameters(), lr=args.lr, betas=(args.beta1, args.beta2))
    dataset = open_image_source(args.data, config.image_size, seed=args.seed)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(args.seed))
    data = (batch for _ in itertools.count() for batch in loader)
    noise_gen = torch.Generator().manual_seed(args.seed + 1)
    out, out_ema = Path(args.out), Path(f"{args.out}-ema")
    log = []
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        real = next(data)
        fake = netG(torch.randn(real.shape[0], config.nz, generator=noise_gen))
        # (1) D: maximize log D(x) + log(1 - D(G(z))), softplus form of the non-saturating loss
        netD.requires_grad_(True)
        errD = F.softplus(-netD(real)).mean() + F.softplus(netD(fake.detach())).mean()
        optimizerD.zero_grad(set_to_none=True)
        errD.backward()
        optimizerD.step()
        # (2) G: maximize log D(G(z)), D frozen
        netD.requires_grad_(False)
        errG = F.softplus(-netD(fake)).mean()
        optimizerG.zero_grad(set_to_none=True)
        errG.backward()
        optimizerG.step()
        with torch.no_grad():  # mmgan's EMA schedule, for the -ema export only
            decay = ema_decay(step - 1, 0.999, 0.05)
            for e, p in zip(ema.parameters(), netG.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
            for e, b in zip(ema.buffers(), netG.buffers(), strict=True):
                e.copy_(b)
        if step % 100 == 0 or step == args.steps:
            elapsed = time.perf_counter() - start
            log.append({"step": step, "d": errD.item(), "g": errG.item(), "seconds": elapsed})
            print(json.dumps(log[-1]), flush=True)
    export_bare(netG.eval(), out, config, args.width, args.steps)
    export_bare(ema, out_ema, config, args.width, args.steps)
    for run in (out, out_ema):
        (run / "bare_log.json").write_text(json.dumps({"args": vars(args), "log": log}, indent=1))
    print(f"exported {out} and {out_ema}")


class RealImages(nn.Module):
    """A stand-in generator that returns fresh real images, ignoring its input: the noise floor row."""

    def __init__(self, size: int, seed: int) -> None:
        super().__init__()
        self.data, self.next = ShapesDataset(size, seed=seed), 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = torch.stack([self.data[self.next + i] for i in range(len(z))])
        self.next += len(z)
        return batch


COLUMNS = ("swd_32", "swd_16", "swd", "fd", "kid", "precision", "recall", "mode_coverage")


def compare(args: argparse.Namespace) -> None:
    from mmgan.api import EvalContext, evaluate, evaluate_run, get_modality

    torch.set_num_threads(args.threads)
    header = machine_header(args.threads)
    rows = {}
    for run in args.runs:
        report = evaluate_run(run, num_samples=args.n, seed=args.seed, batch_size=250)
        rows[run] = report["metrics"] | {"seconds": report["seconds"], "step": report["step"]}
        print(run, json.dumps(rows[run]), flush=True)
    # the floor: real images of another seed against the same real set, through the same metrics
    ctx = EvalContext(modality=get_modality("image"), config=ImageConfig(image_size=args.image_size),
                      generator=RealImages(args.image_size, seed=12345), data="builtin:shapes",
                      num_samples=args.n, batch_size=250, seed=args.seed)
    rows["real images, another seed"] = evaluate(ctx)
    print("| run | " + " | ".join(COLUMNS) + " |")
    print("|:--|" + "--:|" * len(COLUMNS))
    for run, values in rows.items():
        print(f"| {run} | " + " | ".join(f"{values[c]:.4g}" if c in values else "-" for c in COLUMNS) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "args": vars(args), "rows": rows}, indent=2))


def class_counts(args: argparse.Namespace) -> None:
    """How many of n samples the shapes classifier puts in each class, per run: which modes are missing."""
    from mmgan.api import context_for_run
    from mmgan_image.datasets import CLASS_NAMES
    from mmgan_image.features import features_and_classes

    torch.set_num_threads(args.threads)
    print("| run | " + " | ".join(CLASS_NAMES) + " |")
    print("|:--|" + "--:|" * len(CLASS_NAMES))
    for run in args.runs:
        # the very fakes compare scores: same context, seed and batch size
        ctx = context_for_run(run, num_samples=args.n, seed=args.seed, batch_size=250)
        images = torch.cat(list(ctx.fake_batches()))
        counts = torch.bincount(features_and_classes(images)[1], minlength=len(CLASS_NAMES)).tolist()
        print(f"| {run} | " + " | ".join(str(c) for c in counts) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    bare = sub.add_parser("train-bare", help="train the bare DCGAN baseline and export it")
    bare.add_argument("--out", required=True)
    bare.add_argument("--steps", type=int, default=5000)
    bare.add_argument("--batch-size", type=int, default=32)
    bare.add_argument("--lr", type=float, default=2e-4)
    bare.add_argument("--beta1", type=float, default=0.5)
    bare.add_argument("--beta2", type=float, default=0.999)
    bare.add_argument("--image-size", type=int, default=32)
    bare.add_argument("--width", type=int, default=512, help="stem output channels (mmgan's trunk.width)")
    bare.add_argument("--seed", type=int, default=0)
    bare.add_argument("--data", default="builtin:shapes", help="builtin:shapes or a folder of images")
    bare.add_argument("--threads", type=int, default=1)
    cmp = sub.add_parser("compare", help="the same metrics for each run, plus the real-vs-real floor")
    cmp.add_argument("runs", nargs="+")
    cmp.add_argument("-n", type=int, default=5000, help="samples per set (default 5000)")
    cmp.add_argument("--seed", type=int, default=0)
    cmp.add_argument("--image-size", type=int, default=32)
    cmp.add_argument("--threads", type=int, default=1)
    cmp.add_argument("--json", metavar="PATH", help="write every number here")
    classes = sub.add_parser("classes", help="per-class sample counts of each run (shapes classifier)")
    classes.add_argument("runs", nargs="+")
    classes.add_argument("-n", type=int, default=5000)
    classes.add_argument("--seed", type=int, default=0)
    classes.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    {"train-bare": train_bare, "compare": compare, "classes": class_counts}[args.command](args)


if __name__ == "__main__":
    main()
