"""Sample-quality measures that need no download: distances between a real and a generated set.

Modality-agnostic: the distances take ``(N, D)`` arrays from any feature extractor (or point sets).
Plugins compute features and call these from their ``mmgan_evaluate`` hook; docs/metrics.md says what
each number means. (The image plugin's Laplacian-pyramid SWD is in ``mmgan_image.swd``.)

- ``frechet_distance``: Frechet distance between Gaussians fitted to two feature sets (FID's formula,
  Heusel et al. 2017), matrix square root by ``scipy.linalg.sqrtm``.
- ``kernel_inception_distance``: the unbiased MMD^2 with the cubic polynomial kernel, averaged over
  random subsets (Binkowski et al. 2018).
- ``precision_recall``: improved precision and recall from k-NN balls (Kynkaanniemi et al. 2019).
- ``sliced_wasserstein``: the sliced Wasserstein-1 distance between two equal-size point sets.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import scipy.linalg
import torch

from mmgan.errors import MetricError

log = logging.getLogger("mmgan")


def _as_array(features: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"features must be a 2-D array (samples, dims), got shape {array.shape}")
    return array


# ---- Frechet distance ------------------------------------------------------------------------------


def min_samples_for_covariance(dims: int) -> int:
    """The fewest samples whose covariance of ``dims`` features can be full rank: ``dims + 1``.

    With fewer, the covariance is singular and the Frechet distance depends on which directions happen
    to be missing, not on the samples' quality.
    """
    return dims + 1


def check_enough_samples(n: int, dims: int, what: str, hint: str = "") -> None:
    """A MetricError naming the minimum when ``n`` samples of ``dims`` features are too few.

    ``hint`` says what to do (default: ``pass -n <minimum> or more``).
    """
    minimum = min_samples_for_covariance(dims)
    if n < minimum:
        raise MetricError(f"{what} needs at least {minimum} samples for a stable covariance of {dims} features, "
                          f"got {n}; {hint or f'pass -n {minimum} or more'}")


def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of ``(N, D)`` features."""
    array = _as_array(features)
    return array.mean(axis=0), np.cov(array, rowvar=False).reshape(array.shape[1], array.shape[1])


def frechet_distance_from_statistics(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                                     sigma2: np.ndarray) -> float:
    """``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``: the Frechet distance of two Gaussians."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise MetricError(f"feature statistics of different sizes: {mu1.shape} and {mu2.shape}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if caught or not np.isfinite(covmean).all():
        # a (nearly) singular product: shift both covariances by a small multiple of the identity, as
        # pytorch-fid does, rather than trust an inaccurate square root
        offset = np.eye(sigma1.shape[0]) * 1e-6
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        # round-off gives the square root of a PSD product tiny imaginary parts; large ones mean trouble
        imag = np.abs(covmean.imag).max()
        if imag > 1e-3 * max(1.0, np.abs(covmean.real).max()):
            log.warning("Frechet distance: matrix square root has an imaginary part of %.3g; dropped", imag)
        covmean = covmean.real
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    return float(max(value, 0.0))  # round-off can take identical sets a hair below zero


def frechet_distance(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor,
                     what: str = "Frechet distance") -> float:
    """Frechet distance between Gaussians fitted to two ``(N, D)`` feature sets."""
    real, fake = _as_array(real), _as_array(fake)
    for n in (len(real), len(fake)):
        check_enough_samples(n, real.shape[1], what)
    return frechet_distance_from_statistics(*feature_statistics(real), *feature_statistics(fake))


# ---- KID -------------------------------------------------------------------------------------------


def kernel_inception_distance(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor,
                              subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation over ``subsets`` of the unbiased MMD^2 with ``k(x, y) = (x.y / d + 1)^3``.

    Each subset draws ``min(subset_size, len(real), len(fake))`` samples from each set without replacement;
    when that is all of both sets, one subset is the answer (and the standard deviation 0).
    Unbiased: the expected value for two sets from one distribution is 0, so a single estimate can be
    slightly negative.
    """
    real, fake = _as_array(real), _as_array(fake)
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise MetricError(f"KID needs at least 2 samples in each set, got {len(real)} and {len(fake)}")
    d = real.shape[1]
    if m == len(real) == len(fake):
        subsets = 1  # every subset would be the whole of both sets: the same number each time
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(within - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


# ---- precision and recall --------------------------------------------------------------------------


def _pairwise_distances(a: torch.Tensor, b: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    return torch.cat([torch.cdist(a[i:i + chunk], b) for i in range(0, len(a), chunk)])


def _knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each sample to its k-th nearest neighbour in its own set (itself excluded)."""
    radii = []
    for i in range(0, len(features), 1024):
        dist = torch.cdist(features[i:i + 1024], features)
        radii.append(dist.kthvalue(k + 1, dim=1).values)  # the 1st nearest is the sample itself
    return torch.cat(radii)


def _coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Share of ``points`` inside at least one ball (centre, radius)."""
    inside = [(_pairwise_distances(points[i:i + 1024], centres) <= radii).any(dim=1)
              for i in range(0, len(points), 1024)]
    return torch.cat(inside).float().mean().item()


def precision_recall(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor,
                     k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of two ``(N, D)`` feature sets.

    The real manifold is the union of balls around real samples reaching their k-th nearest real
    neighbour; precision is the share of generated samples inside it. Recall swaps the roles.
    """
    a, b = torch.from_numpy(_as_array(real)).float(), torch.from_numpy(_as_array(fake)).float()
    if min(len(a), len(b)) < k + 1:
        raise MetricError(f"precision/recall with k={k} needs at least {k + 1} samples in each set, "
                          f"got {len(a)} and {len(b)}")
    precision = _coverage(b, a, _knn_radii(a, k))
    recall = _coverage(a, b, _knn_radii(b, k))
    return precision, recall


# ---- sliced Wasserstein distance between two point sets ----------------------------------------------


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, directions: int = 128, repeats: int = 4,
                       seed: int = 0) -> float:
    """Mean over random unit directions of the 1-D Wasserstein-1 distance between two equal-size sets."""
    if a.shape != b.shape:
        raise MetricError(f"sliced Wasserstein needs equal-size sets, got {tuple(a.shape)} and {tuple(b.shape)}")
    gen = torch.Generator().manual_seed(seed)
    results = []
    for _ in range(repeats):
        dirs = torch.randn(a.shape[1], directions, generator=gen)
        dirs /= dirs.norm(dim=0, keepdim=True)
        total = 0.0
        for chunk in dirs.T.split(64):  # bounded memory: 64 x N projections at a time
            # sorting along the last, contiguous dimension is many times faster than along the first
            # (numpy's sort is several times faster than torch's on the CPU)
            pa, pb = np.sort((chunk @ a.T).numpy(), axis=1), np.sort((chunk @ b.T).numpy(), axis=1)
            total += float(np.abs(pa - pb).mean(axis=1).sum())
        results.append(total / directions)
    return float(np.mean(results))
