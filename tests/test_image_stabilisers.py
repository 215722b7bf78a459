"""The image discriminator's stabilisers: spectral norm, R1 and differentiable augmentation."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_one_line_error, read_metrics, tiny_args
from torch import nn

from mmgan.engine import Trainer
from mmgan_image.stabilisers import AugmentedDiscriminator, color, cutout, parse_augment, translation


def test_augmentations_keep_shape_and_gradient_and_differ_from_the_input():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 16, 16, requires_grad=True)
    for augment in (color, translation, cutout):
        y = augment(x)
        assert y.shape == x.shape and not torch.equal(y, x), augment.__name__
        (grad,) = torch.autograd.grad(y.sum(), x)
        assert grad.abs().sum() > 0, augment.__name__


def test_translation_moves_the_image_and_fills_with_zeros():
    x = torch.arange(16.0).view(1, 1, 4, 4) + 1
    torch.manual_seed(3)
    shifted = translation(x, ratio=0.25)
    # every value either comes from the image or is the zero fill
    assert set(shifted.unique().tolist()) <= set(x.unique().tolist()) | {0.0}


def test_augmented_discriminator_augments_in_training_only():
    seen = []
    disc = AugmentedDiscriminator(nn.Identity(), ("cutout",))
    x = torch.ones(2, 3, 8, 8)
    seen.append(disc(x))
    disc.eval()
    assert torch.equal(disc(x), x)
    assert not torch.equal(seen[0], x)


def test_bad_augmentation_names_are_refused(cli_run, tmp_path):
    with pytest.raises(ValueError, match="blur"):
        parse_augment("color,blur")
    result = cli_run("run", "--plugin", "image", *tiny_args(tmp_path / "run", extra=("image.augment=blur",)))
    assert_one_line_error(result, "augment", "blur")


def test_each_stabiliser_trains_and_an_augmented_run_resumes_exactly(tiny_config, tmp_path):
    extra = ("image.spectral_norm=true", "image.r1_gamma=1.0", "image.augment=color,translation,cutout")
    trainer = Trainer(tiny_config(tmp_path / "unbroken", steps=4, extra=extra), progress=False)
    disc = trainer.D_module.discriminators["image"]
    assert isinstance(disc, AugmentedDiscriminator)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in disc.modules())
    assert any(hasattr(m, "parametrizations") for m in disc.modules())
    trainer.fit()
    unbroken = read_metrics(tmp_path / "unbroken")
    assert all(r["image/d/r1"] > 0 for r in unbroken)
    Trainer(tiny_config(tmp_path / "broken", steps=2, extra=extra), progress=False).fit()
    Trainer(tiny_config(tmp_path / "broken", steps=4, extra=extra), resume=True, progress=False).fit()
    resumed = read_metrics(tmp_path / "broken")
    for key in ("image/d/adv", "image/g/adv", "image/d/r1"):
        assert [r[key] for r in unbroken] == [r[key] for r in resumed], key
