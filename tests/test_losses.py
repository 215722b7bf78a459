import math

import pytest
import torch

from mmgan.contract.manager import adversarial_losses, get_adversarial_loss
from mmgan.errors import PluginError
from mmgan.losses import HingeLoss, LeastSquaresLoss, NonSaturatingLoss, logits_of


def test_nonsaturating_matches_the_gan_objective():
    loss = NonSaturatingLoss()
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    expected_d = -(torch.log(torch.sigmoid(real)).mean() + torch.log(1 - torch.sigmoid(fake)).mean())
    assert torch.allclose(loss.d_loss(real, fake), expected_d)
    assert torch.allclose(loss.g_loss(fake), -torch.log(torch.sigmoid(fake)).mean())
    # at D's indifference point the D loss is 2 log 2
    assert math.isclose(loss.d_loss(torch.zeros(4), torch.zeros(4)).item(), 2 * math.log(2), rel_tol=1e-6)


def test_nonsaturating_is_stable_for_extreme_logits():
    loss = NonSaturatingLoss()
    assert torch.isfinite(loss.d_loss(torch.tensor([-1e4]), torch.tensor([1e4])))
    assert torch.isfinite(loss.g_loss(torch.tensor([-1e4])))


def test_hinge_and_least_squares():
    real, fake = torch.tensor([0.5, 2.0]), torch.tensor([-0.5, 1.0])
    assert torch.allclose(HingeLoss().d_loss(real, fake), torch.tensor((0.5 + 0.0) / 2 + (0.5 + 2.0) / 2))
    assert torch.allclose(HingeLoss().g_loss(fake), torch.tensor(-0.25))
    assert torch.allclose(LeastSquaresLoss().d_loss(real, fake), torch.tensor((0.25 + 1.0) / 2 + (0.25 + 1.0) / 2))
    assert torch.allclose(LeastSquaresLoss().g_loss(fake), torch.tensor((2.25 + 0.0) / 2))


def test_multi_scale_outputs_average_over_scales():
    loss = LeastSquaresLoss()
    a, b = torch.ones(3), torch.zeros(5)
    assert torch.allclose(loss.g_loss([a, b]), (loss.g_loss(a) + loss.g_loss(b)) / 2)

    class Out:
        logits = [a, b]
    assert torch.allclose(loss.g_loss(Out()), loss.g_loss([a, b]))
    with pytest.raises(TypeError, match="discriminator output"):
        logits_of({"not": "logits"})


def test_core_registers_the_three_losses_by_name():
    assert {"nonsaturating", "hinge", "lsgan"} <= set(adversarial_losses())
    with pytest.raises(PluginError, match="unknown adversarial loss 'wasserstein'.*hinge"):
        get_adversarial_loss("wasserstein")
