"""Images/s of a full DCGAN training step: mmgan's Trainer vs the same networks in a plain PyTorch loop.

    python benchmarks/train_image.py                          # fp32, sizes 64 and 32, 5 rounds
    python benchmarks/train_image.py --bf16 --channels-last --json runs/bench.json
    python benchmarks/train_image.py --sizes 32 --batch 32 --compare-bf16   # + bare-bf16: the bf16/fp32 ratio
    python benchmarks/train_image.py --device cuda --compare-bf16           # on a GPU (benchmarks/gpu.sh)

One step = D update on real + detached fake, then G update through a frozen D, then the optimizer steps
(and, for mmgan only, its EMA update), at batch 64 on the built-in shapes. Three contenders, timed in one
process and interleaved (round-robin blocks of --block steps, order rotated each round):
  mmgan        Trainer.train_step (Accelerate, plugin hooks, EMA)
  bare         stem -> LatentTrunk -> head and the DCGAN discriminator in a hand-written loop
  dcgan-paper  the bare loop without the trunk (stem -> head), the paper's generator
mmgan / bare is the framework's overhead; bare / dcgan-paper is the trunk's cost. With --compare-bf16 a
fourth contender, bare-bf16 (the bare loop under bf16 autocast), gives the speed ratio of bf16 to fp32 in
the same process (one process cannot hold two Accelerators of different precision, so the ratio is the
bare loop's, over the networks mmgan trains).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from harness import machine_header, trainer_step_fn
from torch import nn
from torch.utils.data import DataLoader

from mmgan.api import get_modality
from mmgan.config import resolve
from mmgan.engine import Trainer
from mmgan.trunk import LatentTrunk, TrunkConfig
from mmgan_image.datasets import ShapesDataset
from mmgan_image.networks import DCGANDiscriminator, DCGANHead, DCGANStem

SEED = 0


class Generator(nn.Module):
    """z -> DCGANStem -> (LatentTrunk) -> DCGANHead: mmgan's image generator without the framework."""

    def __init__(self, nz: int, ngf: int, size: int, config: TrunkConfig, trunk: bool, depth: int = -1) -> None:
        super().__init__()
        self.stem = DCGANStem(nz, config.width)
        self.trunk = LatentTrunk(config, ["image"]) if trunk else None
        self.depth = depth  # the trunk blocks the image goes through (image.trunk_depth)
        self.head = DCGANHead(config.width, ngf, size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(z)
        if self.trunk is not None:
            tokens = self.trunk(tokens, "image", self.depth)
        return self.head(tokens)


def bare_step_fn(config, size: int, trunk: bool, args, bf16: bool | None = None):
    """A plain training loop in the style of pytorch/examples dcgan/main.py; returns one-step callable."""
    bf16 = args.bf16 if bf16 is None else bf16
    torch.manual_seed(SEED)
    m, t = config.modalities["image"], config.train
    netG = Generator(m.nz, m.ngf, size, config.trunk, trunk, m.trunk_depth)
    netD = DCGANDiscriminator(m.ndf, size)
    netG, netD = netG.to(args.device), netD.to(args.device)
    if args.channels_last:
        netG, netD = netG.to(memory_format=torch.channels_last), netD.to(memory_format=torch.channels_last)
    optimizerG = torch.optim.Adam(netG.parameters(), lr=t.lr_g, betas=(t.beta1, t.beta2))
    optimizerD = torch.optim.Adam(netD.parameters(), lr=t.lr_d, betas=(t.beta1, t.beta2))
    dataset = ShapesDataset(size, seed=SEED)
    dataloader = DataLoader(dataset, batch_size=args.batch, shuffle=True, drop_last=True,
                            generator=torch.Generator().manual_seed(SEED))
    noise_gen = torch.Generator().manual_seed(SEED + 1)

    data = (batch for _ in itertools.count() for batch in dataloader)  # endless, epoch after epoch

    def autocast():
        device_type = torch.device(args.device).type
        return torch.autocast(device_type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step() -> None:
        real = next(data).to(args.device, non_blocking=True)
        noise = torch.randn(real.shape[0], m.nz, generator=noise_gen).to(args.device, non_blocking=True)
        # (1) update D: maximize log D(x) + log(1 - D(G(z))); the fake is generated once, reused in (2)
        netD.requires_grad_(True)
        with autocast():
            fake = netG(noise)
            d_real, d_fake = netD(real), netD(fake.detach())
        errD = F.softplus(-d_real.float()).mean() + F.softplus(d_fake.float()).mean()
        optimizerD.zero_grad(set_to_none=True)
        errD.backward()
        optimizerD.step()
        # (2) update G: maximize log D(G(z)), D frozen
        netD.requires_grad_(False)
        with autocast():
            d_fake = netD(fake)
        errG = F.softplus(-d_fake.float()).mean()
        optimizerG.zero_grad(set_to_none=True)
        errG.backward()
        optimizerG.step()
        netD.requires_grad_(True)

    return step


def mmgan_step_fn(config):
    torch.manual_seed(SEED)
    return trainer_step_fn(Trainer(config, progress=False))


def bench_size(size: int, out: str, args) -> dict[str, list[float]]:
    overrides = [f"image.image_size={size}", f"train.mixed_precision={'bf16' if args.bf16 else 'no'}",
                 f"train.channels_last={'true' if args.channels_last else 'false'}"]
    config = resolve(get_modality, plugins=["image"], out=out, steps=10**6, batch_size=args.batch,
                     seed=SEED, overrides=overrides)
    contenders = {
        "mmgan": mmgan_step_fn(config),
        "bare": bare_step_fn(config, size, True, args),
        "dcgan-paper": bare_step_fn(config, size, False, args),
    }
    if args.compare_bf16:
        contenders["bare-bf16"] = bare_step_fn(config, size, True, args, bf16=True)
    torch.set_num_threads(args.threads)  # in case anything above changed it
    # a GPU runs ahead of Python: wait for its work before reading the clock
    sync = torch.cuda.synchronize if torch.device(args.device).type == "cuda" else (lambda: None)
    for step in contenders.values():
        for _ in range(args.warmup):
            step()
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate who goes first
            sync()
            start = time.perf_counter()
            for _ in range(args.block):
                contenders[name]()
            sync()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 32], help="image sizes (default 64 32)")
    parser.add_argument("--rounds", type=int, default=5, help="round-robin rounds (default 5)")
    parser.add_argument("--block", type=int, default=4, help="steps per timed block (default 4)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per contender (default 2)")
    parser.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for every contender")
    parser.add_argument("--channels-last", action="store_true", help="channels_last modules for every contender")
    parser.add_argument("--compare-bf16", action="store_true", help="add bare-bf16: the bf16/fp32 speed ratio")
    parser.add_argument("--json", metavar="PATH", help="write the raw block timings here")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where every contender trains (default cuda if available, else cpu)")
    args = parser.parse_args()
    if torch.device(args.device).type == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "1"  # mmgan's Trainer on the CPU too, beside the bare loops

    torch.set_num_threads(args.threads)
    header = machine_header(args.threads)
    header["device"] = args.device
    print(f"batch {args.batch}, {args.rounds} rounds x {args.block} steps per contender, warmup {args.warmup}, "
          f"bf16={args.bf16}, channels_last={args.channels_last}, device {args.device}\n")

    results = {}
    with tempfile.TemporaryDirectory(prefix="mmgan-bench-") as tmp:
        for size in args.sizes:
            results[size] = bench_size(size, os.path.join(tmp, f"run{size}"), args)

    print("| size | contender | median img/s | min img/s | max img/s | ratio to bare |")
    print("|-----:|:----------|-------------:|----------:|----------:|--------------:|")
    shares = {}
    for size, seconds in results.items():
        rates = {name: [args.block * args.batch / s for s in blocks] for name, blocks in seconds.items()}
        bare = statistics.median(rates["bare"])
        for name, r in rates.items():
            med = statistics.median(r)
            print(f"| {size} | {name} | {med:.1f} | {min(r):.1f} | {max(r):.1f} | {med / bare:.3f} |")
        # the trunk's share of the step: the time it adds over the paper's generator, over the whole step
        shares[size] = 1 - bare / statistics.median(rates["dcgan-paper"])
    print("\n" + "; ".join(f"trunk share of the step at {size}x{size}: {100 * v:.1f}%" for size, v in shares.items()))
    if args.compare_bf16:
        for size, seconds in results.items():
            ratio = statistics.median(seconds["bare"]) / statistics.median(seconds["bare-bf16"])
            print(f"bf16 / fp32 speed at {size}x{size}: {ratio:.2f}x")

    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"header": header, "args": vars(args), "block_seconds": results}, f, indent=2)


if __name__ == "__main__":
    main()
