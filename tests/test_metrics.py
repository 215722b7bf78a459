"""Known answers for the metric math: identical sets give 0, Gaussians give the analytic Frechet
distance, and noise, blur or a shift raise every distance monotonically."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmgan.errors import MetricError
from mmgan.evaluation import distances as metrics
from mmgan_image import swd


def gaussian(n: int, mean: np.ndarray, std: np.ndarray, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, len(mean))) * std + mean


def test_frechet_distance_of_two_gaussians_is_the_analytic_value():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.diag([1.0, 4.0, 0.25]), np.diag([2.0, 1.0, 1.0])
    # diagonal covariances: |mu1 - mu2|^2 + sum(s1 + s2 - 2 sqrt(s1 s2))
    expected = 5.0 + sum(a + b - 2 * np.sqrt(a * b) for a, b in [(1, 2), (4, 1), (0.25, 1)])
    assert metrics.frechet_distance_from_statistics(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    # a full covariance, rotated: the distance is rotation invariant
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    rotated = metrics.frechet_distance_from_statistics(q @ mu1, q @ s1 @ q.T, q @ mu2, q @ s2 @ q.T)
    assert rotated == pytest.approx(expected, rel=1e-7)
    # and from samples, up to sampling error
    a = gaussian(20000, mu1, np.sqrt(np.diag(s1)), 1)
    b = gaussian(20000, mu2, np.sqrt(np.diag(s2)), 2)
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=0.03)


def test_identical_sets_give_zero():
    a = gaussian(400, np.zeros(8), np.ones(8), 0)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert metrics.precision_recall(a, a) == (1.0, 1.0)
    kid, _ = metrics.kernel_inception_distance(a, a, subsets=10, subset_size=200)
    shifted, _ = metrics.kernel_inception_distance(a, a + 0.5, subsets=10, subset_size=200)
    assert abs(kid) < 0.1 * shifted  # unbiased: zero in expectation, not exactly
    images = torch.rand(40, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    same = swd.sliced_wasserstein_distance(images, images)
    assert same == {"swd_32": 0.0, "swd_16": 0.0, "swd": 0.0}


def test_feature_distances_grow_with_the_shift():
    a = gaussian(300, np.zeros(6), np.ones(6), 0)
    fd, kid, precision, recall = [], [], [], []
    for shift in (0.0, 0.3, 1.0, 3.0):
        b = gaussian(300, np.full(6, shift), np.ones(6), 1)
        fd.append(metrics.frechet_distance(a, b))
        kid.append(metrics.kernel_inception_distance(a, b, subsets=10, subset_size=200)[0])
        p, r = metrics.precision_recall(a, b)
        precision.append(p)
        recall.append(r)
    assert fd == sorted(fd) and kid == sorted(kid) and fd[0] < 0.3 < 1.0 < fd[-1]
    assert precision == sorted(precision, reverse=True) and recall[0] > recall[2] > recall[3]  # 0.3: noise
    assert precision[-1] < 0.1 < 0.8 < precision[0]


def smooth_images(n: int, seed: int) -> torch.Tensor:
    """Images with structure at every scale: random low-resolution colours upsampled, plus edges."""
    gen = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(n, 3, 4, 4, generator=gen) * 2 - 1, size=32, mode="bilinear")
    edges = (torch.rand(n, 3, 8, 8, generator=gen) > 0.5).float().repeat_interleave(4, 2).repeat_interleave(4, 3)
    return (0.7 * base + 0.3 * (edges * 2 - 1)).clamp(-1, 1)


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = 4
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-x**2 / (2 * sigma**2))
    k = (k / k.sum())
    kernel = torch.outer(k, k)[None, None].repeat(3, 1, 1, 1)
    return F.conv2d(F.pad(images, (radius,) * 4, mode="reflect"), kernel, groups=3)


@pytest.mark.parametrize("corrupt", [
    lambda x, s: (x + s * torch.randn(x.shape, generator=torch.Generator().manual_seed(9))).clamp(-1, 1),
    lambda x, s: blur(x, 0.3 + 2 * s) if s else x,
    lambda x, s: (x + s).clamp(-1, 1),
], ids=["noise", "blur", "shift"])
def test_swd_grows_with_noise_blur_and_shift(corrupt):
    real = smooth_images(24, 0)
    values = [swd.sliced_wasserstein_distance(real, corrupt(real, s), patches_per_image=16)
              for s in (0.0, 0.2, 0.5, 1.0)]
    for key in values[0]:
        series = [v[key] for v in values]
        assert series == sorted(series), (key, series)


def test_laplacian_pyramid_levels_add_back_to_the_image():
    images = smooth_images(4, 0)
    levels = swd.laplacian_pyramid(images)
    assert [lv.shape[-1] for lv in levels] == swd.pyramid_sizes(32) == [32, 16]
    rebuilt = levels[0] + swd._pyr_up(levels[1])
    assert torch.allclose(rebuilt, images, atol=1e-5)


def test_too_few_samples_names_the_minimum():
    a = gaussian(10, np.zeros(16), np.ones(16), 0)
    with pytest.raises(MetricError, match="at least 17 samples"):
        metrics.frechet_distance(a, a)
    with pytest.raises(MetricError, match="at least 4 samples"):
        metrics.precision_recall(a[:3], a)


def test_swd_refuses_images_of_different_sizes():
    with pytest.raises(MetricError, match=r"\(3, 32, 32\).*\(3, 64, 64\)"):
        swd.sliced_wasserstein_distance(torch.zeros(4, 3, 32, 32), torch.zeros(4, 3, 64, 64))


def test_the_pyramid_swd_moved_to_the_image_plugin_and_the_old_name_still_works():
    import mmgan.metrics

    with pytest.warns(DeprecationWarning, match="mmgan_image.swd"):
        old = mmgan.metrics.sliced_wasserstein_distance
    assert old is swd.sliced_wasserstein_distance
