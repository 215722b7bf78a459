"""Reproduce the shipped shapes classifier: ``python -m mmgan_image.train_features`` (a few CPU minutes).

Trains ``ShapesClassifier`` on 20 000 images of ``builtin:shapes`` rendered with seed 1000 (the training
runs use seed 0 by default, so metric features never saw the images a GAN trains on), at 32x32, with
light noise and brightness augmentation so that imperfect generated images still land near their class.
Reports accuracy on 5 000 held-out images (seed 2000, at 32x32 and at 64x64 pooled to 32x32) and writes
``weights/shapes_classifier.safetensors`` and a JSON with the numbers. Deterministic for one torch
version and thread count (one thread by default).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from mmgan.files import atomic_path
from mmgan_image.datasets import CLASS_NAMES, ShapesDataset
from mmgan_image.features import WEIGHTS, ShapesClassifier, to_classifier_input


def render(size: int, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = ShapesDataset(size, length=count, seed=seed)
    return torch.stack([data[i] for i in range(count)]), torch.tensor([data.label(i) for i in range(count)])


@torch.no_grad()
def accuracy(model: ShapesClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    predictions = torch.cat([model(to_classifier_input(b)).argmax(1) for b in images.split(500)])
    return (predictions == labels).float().mean().item()


def train(args: argparse.Namespace) -> tuple[ShapesClassifier, dict]:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    images, labels = render(32, args.train_images, args.data_seed)
    model = ShapesClassifier(len(CLASS_NAMES))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    steps = args.epochs * (len(images) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    start, step = time.perf_counter(), 0
    for _ in range(args.epochs):
        model.train()
        order = torch.randperm(len(images), generator=gen)
        for i in range(0, len(order) - args.batch_size + 1, args.batch_size):
            idx = order[i:i + args.batch_size]
            x = images[idx]
            # augmentation: pixel noise and a brightness/contrast wobble, as generated images have
            x = x * (1 + 0.1 * torch.randn(len(x), 1, 1, 1, generator=gen)) \
                + 0.1 * torch.randn(len(x), 3, 1, 1, generator=gen) + 0.08 * torch.randn(x.shape, generator=gen)
            loss = F.cross_entropy(model(x.clamp(-1, 1)), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 100 == 0:
                print(f"step {step}/{steps} loss {loss.item():.4f} {time.perf_counter() - start:.0f}s", flush=True)
    model.eval()
    held32, labels32 = render(32, args.heldout_images, args.heldout_seed)
    held64, labels64 = render(64, args.heldout_images, args.heldout_seed)
    info = {
        "heldout_accuracy_32": accuracy(model, held32, labels32),
        "heldout_accuracy_64": accuracy(model, held64, labels64),
        "heldout": f"{args.heldout_images} images of builtin:shapes, seed {args.heldout_seed}",
        "train": f"{args.train_images} images of builtin:shapes at 32x32, seed {args.data_seed}",
        "args": {**vars(args), "out": args.out.name}, "torch": torch.__version__,
        "train_seconds": round(time.perf_counter() - start, 1),
    }
    return model, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--train-images", type=int, default=20_000)
    parser.add_argument("--heldout-images", type=int, default=5_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-seed", type=int, default=1000)
    parser.add_argument("--heldout-seed", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    model, info = train(args)
    with atomic_path(args.out) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    with atomic_path(args.out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in info.items() if k != "args"}, indent=2, default=str))


if __name__ == "__main__":
    main()
