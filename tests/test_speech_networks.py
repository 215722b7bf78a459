"""MelGAN networks: hop alignment, the stem -> trunk -> head path, weight-norm removal, the multi-scale D,
gradient flow through G and D, feature matching, and the paper's parameter counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from mmgan.losses import LeastSquaresLoss
from mmgan.trunk import LatentTrunk, TrunkConfig
from mmgan_speech.mel import mel_spectrogram
from mmgan_speech.networks import (
    DiscriminatorOutput,
    MelGANHead,
    MelStem,
    MultiScaleDiscriminator,
    ReflectionPad1d,
    feature_matching_loss,
    remove_weight_norm,
)

WIDTH, NGF = 64, 4  # the real architecture, narrow enough for a CPU test
SMALL_D = {"ndf": 4, "max_channels": 64}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def small_generator() -> tuple[MelStem, LatentTrunk, MelGANHead]:
    torch.manual_seed(0)
    trunk = LatentTrunk(TrunkConfig(width=WIDTH, depth=1), ["speech"])
    torch.nn.init.normal_(trunk.blocks[0].down.weight, 0.0, 0.02)  # leave the identity start: a real trunk
    for gate in trunk.gate.values():  # the bounded residual's gate, as training moves it off 0
        torch.nn.init.constant_(gate, 0.3)
    return MelStem(width=WIDTH), trunk, MelGANHead(width=WIDTH, ngf=NGF)


@pytest.mark.parametrize("frames", [1, 7, 32])
def test_head_multiplies_frames_by_the_hop(frames):
    head = MelGANHead(width=WIDTH, ngf=NGF)
    assert head.hop_length == 256
    assert head(torch.randn(2, WIDTH, frames)).shape == (2, 1, frames * 256)


@pytest.mark.slow
@pytest.mark.parametrize("ratios", [(8, 8, 2, 2), (5, 3), (4, 4, 4, 4)])
def test_odd_and_other_ratios_multiply_length_exactly(ratios):
    head = MelGANHead(width=8, ratios=ratios, ngf=2)
    hop = 1
    for r in ratios:
        hop *= r
    assert head(torch.randn(1, 8, 5)).shape == (1, 1, 5 * hop)


def test_stem_trunk_head_gives_a_bounded_wave_per_frame():
    stem, trunk, head = small_generator()
    for frames in (1, 3, 16):
        mel = torch.randn(2, 80, frames) - 5.0
        wave = head(trunk(stem(mel), "speech"))
        assert wave.shape == (2, 1, frames * 256)
        assert wave.abs().max() <= 1.0 and torch.isfinite(wave).all()
    with pytest.raises(ValueError, match="80"):
        stem(torch.randn(2, 64, 10))


def test_reflection_pad_is_torchs_where_defined_and_total_elsewhere():
    pad = ReflectionPad1d(4)
    x = torch.randn(2, 3, 9)
    assert torch.equal(pad(x), F.pad(x, (4, 4), mode="reflect"))
    assert pad(torch.tensor([[[1.0, 2.0]]])).tolist() == [[[1, 2, 1, 2, 1, 2, 1, 2, 1, 2]]]
    assert torch.equal(pad(torch.full((1, 2, 1), 3.0)), torch.full((1, 2, 9), 3.0))


def test_remove_weight_norm_keeps_the_output_and_leaves_no_parametrisation():
    stem, trunk, head = small_generator()
    with torch.no_grad():  # move g away from ||v|| so that removal has something to fold in
        for name, p in head.named_parameters():
            if name.endswith("original0"):
                p.mul_(1.5)
    mel = torch.randn(2, 80, 6)
    before = head(trunk(stem(mel), "speech"))
    d = MultiScaleDiscriminator(**SMALL_D)
    d_before = d(before.detach()).logits
    for module in (stem, head, d):
        assert remove_weight_norm(module) is module
        assert not any(parametrize.is_parametrized(m) for m in module.modules())
        assert not any("parametrizations" in k for k in module.state_dict())
    torch.testing.assert_close(head(trunk(stem(mel), "speech")), before, rtol=0, atol=1e-6)
    for a, b in zip(d(before.detach()).logits, d_before, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_untrained_generator_is_not_silent():
    # a silent start sits below the log-mel clamp (1e-5), where the mel loss has no gradient
    torch.manual_seed(0)
    stem, head = MelStem(), MelGANHead()
    mel = mel_spectrogram(0.5 * torch.sin(torch.arange(8192) * 2 * torch.pi * 220 / 22050))
    wave = head(stem(mel[None]))
    assert wave.abs().max() > 1e-2


def test_multi_scale_discriminator_logits_and_features():
    d = MultiScaleDiscriminator()  # the paper's D: its lengths and channels
    out = d(torch.randn(2, 1, 2048))
    assert isinstance(out, DiscriminatorOutput)
    # each scale halves the wave (average pooling), then four stride-4 convs divide by 256
    assert [tuple(t.shape) for t in out.logits] == [(2, 1, 8), (2, 1, 4), (2, 1, 2)]
    assert len(out.features) == 3
    for k, feats in enumerate(out.features):
        t = 2048 // 2**k
        assert [tuple(f.shape) for f in feats] == [
            (2, 16, t), (2, 64, t // 4), (2, 256, t // 16), (2, 1024, t // 64), (2, 1024, t // 256),
            (2, 1024, t // 256)]
    assert [t.shape for t in d(torch.randn(2, 2048)).logits] == [t.shape for t in out.logits]  # (B, T) too
    with pytest.raises(ValueError, match=r"\(B, 1, T\)"):
        d(torch.randn(2, 2, 2048))


def test_gradients_reach_every_parameter_of_g_and_d():
    stem, trunk, head = small_generator()
    d = MultiScaleDiscriminator(**SMALL_D)
    loss = LeastSquaresLoss()  # hinge has exactly zero gradient once every logit is past its margin
    mel, real = torch.randn(2, 80, 4), torch.rand(2, 1, 4 * 256) * 2 - 1

    fake = head(trunk(stem(mel), "speech"))
    loss.d_loss(d(real), d(fake.detach())).backward()
    for name, p in d.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
    assert all(p.grad is None for m in (stem, trunk, head) for p in m.parameters())

    d.requires_grad_(False)
    d_fake = d(fake)
    (loss.g_loss(d_fake) + 10 * feature_matching_loss(d(real), d_fake)).backward()
    for module in (stem, trunk, head):
        for name, p in module.named_parameters():
            if name == "film.speech":  # FiLM is zero-initialised; its gradient can be checked, not required > 0
                assert p.grad is not None
                continue
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_feature_matching_is_zero_only_for_identical_inputs():
    torch.manual_seed(0)
    d = MultiScaleDiscriminator(**SMALL_D)
    wave = torch.randn(2, 1, 1024)
    real = d(wave)
    assert feature_matching_loss(real, d(wave.clone())).item() == 0.0
    fake_wave = wave.clone().requires_grad_(True)
    with torch.no_grad():
        fake_wave[..., 100:200] += 0.5
    fake = d(fake_wave)
    fm = feature_matching_loss(real, fake)
    assert fm.item() > 0
    fm.backward()  # flows to the fake input ...
    assert fake_wave.grad.abs().sum() > 0
    assert all(f.grad_fn is not None for scale in real.features for f in scale)  # ... not through real (detached)


def test_default_sizes_are_melgans():
    g = count(MelStem()) + count(MelGANHead())
    # MelGAN's generator has about 4.26M parameters (weight norm adds one gain per output channel)
    assert 4.2e6 < g < 4.35e6, g
    assert 16.8e6 < count(MultiScaleDiscriminator()) < 17.0e6
