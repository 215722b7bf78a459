"""The data-copying check (``mmgan eval``'s ``memorisation``): a generator that copies its training images is
flagged, one that makes new samples of the same distribution is not; what served as held-out data is said."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mmgan.api import EvalContext, get_modality
from mmgan.evaluation.memorisation import THRESHOLD, mann_whitney_z, memorisation, nearest
from mmgan_image.datasets import ShapesDataset
from mmgan_image.plugin import ImageConfig


def write_folder(path: Path, seed: int, n: int) -> Path:
    path.mkdir(parents=True)
    shapes = ShapesDataset(32, seed=seed)
    for i in range(n):
        pixels = ((shapes[i].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path / f"{i:03d}.png")
    return path


class Replay(nn.Module):
    """A 'generator' that returns the given images in turn, with a little noise: a copier, or a model whose
    samples are new draws of the distribution."""

    def __init__(self, images: torch.Tensor, noise: float = 0.02) -> None:
        super().__init__()
        self.images, self.noise, self.next = images, noise, 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        picks = torch.arange(self.next, self.next + len(z)) % len(self.images)
        self.next += len(z)
        return self.images[picks] + self.noise * torch.randn(len(z), *self.images.shape[1:],
                                                            generator=torch.Generator().manual_seed(self.next))


def context(generator: nn.Module, held_out: Path, n: int = 200) -> EvalContext:
    config = ImageConfig(image_size=32, nz=16)
    return EvalContext(modality=get_modality("image"), config=config, generator=generator, data=str(held_out),
                       num_samples=n, batch_size=50)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("memo")
    return write_folder(root / "train", 0, 24), write_folder(root / "held", 1, 120)


def test_a_generator_that_copies_its_training_images_is_flagged_and_one_that_makes_new_ones_is_not(folders, tmp_path):
    train, held = folders
    training_images = torch.stack([ShapesDataset(32, seed=0)[i] for i in range(24)])
    copied = memorisation(context(Replay(training_images), held), str(train), 0, tmp_path / "pairs")
    assert copied["copying"] is True and copied["statistic"] < THRESHOLD
    assert copied["generated_median"] < copied["held_out_median"] and copied["reference"] == 24
    assert copied["held_out"] == f"{held} (held out)"
    assert (tmp_path / "pairs.png").is_file()
    fresh = torch.stack([ShapesDataset(32, seed=7)[i] for i in range(200)])
    new = memorisation(context(Replay(fresh), held), str(train), 0)
    assert new["copying"] is False and new["statistic"] > THRESHOLD
    json.dumps(new)  # what eval.json stores


def test_without_a_held_out_source_the_training_set_is_split_and_the_verdict_says_so(folders):
    train, _ = folders
    training_images = torch.stack([ShapesDataset(32, seed=0)[i] for i in range(24)])
    verdict = memorisation(context(Replay(training_images), train, n=100), str(train), 0)
    assert verdict["held_out"].startswith(f"none: {train} split in two") and verdict["reference"] == 12
    # half its samples are the reference's own images: nearer than the other half, though 12 "held-out"
    # samples are too few for the test to be sure (the weaker test the verdict warns of)
    assert verdict["statistic"] < 0 and verdict["generated_median"] < verdict["held_out_median"]


def test_nearest_and_the_z_score():
    d, i = nearest(torch.tensor([[0.0, 1.0], [5.0, 5.0]]), torch.tensor([[0.0, 0.0], [4.0, 5.0], [9.0, 9.0]]))
    assert d.tolist() == [1.0, 1.0] and i.tolist() == [0, 1]
    small, large = torch.arange(50.0), torch.arange(50.0) + 100
    assert mann_whitney_z(small, large) < -8 < 8 < mann_whitney_z(large, small)
    assert abs(mann_whitney_z(small, small)) < 0.1
