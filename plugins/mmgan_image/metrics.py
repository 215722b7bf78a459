"""The image plugin's metrics (``mmgan_evaluate`` for ``image``): SWD, FD, KID, precision/recall, mode
coverage, and FID when the user supplies the pytorch-fid Inception weights. See docs/metrics.md."""

from __future__ import annotations

import logging
from collections import OrderedDict

import torch

from mmgan.errors import MetricError
from mmgan.evaluation.distances import (
    check_enough_samples,
    frechet_distance,
    kernel_inception_distance,
    precision_recall,
)
from mmgan.evaluation.scoring import EvalContext
from mmgan_image.datasets import CLASS_NAMES
from mmgan_image.features import FEATURE_DIM, features_and_classes
from mmgan_image.inception import FID_FEATURE_DIM, FIDInceptionV3, inception_features, load_fid_inception
from mmgan_image.swd import sliced_wasserstein_distance

log = logging.getLogger("mmgan")

# a class counts as covered when it holds at least this share of its fair share (N / classes) of samples,
# so that a few misclassified artefacts do not make a collapsed generator look complete
COVERAGE_SHARE = 0.1
# real images and their features, kept between periodic evaluations of one training run
_REAL_CACHE: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = OrderedDict()


def _real_set(ctx: EvalContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    key = (ctx.data, ctx.config.image_size, ctx.num_samples, ctx.seed)
    if key not in _REAL_CACHE:
        real = torch.cat(list(ctx.real_batches()))
        _REAL_CACHE[key] = (real, *features_and_classes(real))
        while len(_REAL_CACHE) > 2:
            _REAL_CACHE.popitem(last=False)
    return _REAL_CACHE[key]


def mode_coverage(classes: torch.Tensor, num_classes: int = len(CLASS_NAMES)) -> float:
    """Share of classes holding at least ``COVERAGE_SHARE`` of a fair share of the predicted classes."""
    counts = torch.bincount(classes, minlength=num_classes)
    return (counts >= COVERAGE_SHARE * len(classes) / num_classes).float().mean().item()


def image_metrics(ctx: EvalContext) -> dict[str, float]:
    """Every image metric for ``ctx``: the real set from ``ctx.data``, the fakes from ``ctx.generator``."""
    inception = _inception_model(ctx)  # first: a wrong file is reported before minutes of work
    check_enough_samples(ctx.num_samples, FEATURE_DIM, "FD")
    real, real_feats, _ = _real_set(ctx)
    fake = torch.cat(list(ctx.fake_batches()))
    if real.shape[1:] != fake.shape[1:]:
        (c, h, w), (fc, fh, fw) = real.shape[1:], fake.shape[1:]
        raise MetricError(f"real images from {ctx.data} are {h}x{w} ({c} channels) but the generator makes "
                          f"{fh}x{fw} ({fc} channels); compare images of one size")
    check_enough_samples(len(real), FEATURE_DIM, f"FD on the real images of {ctx.data}",
                         "that source has too few images; use a larger one")
    results: dict[str, float] = dict(sliced_wasserstein_distance(real, fake, seed=ctx.seed))
    fake_feats, fake_classes = features_and_classes(fake)
    results["fd"] = frechet_distance(real_feats, fake_feats)
    results["kid"], results["kid_std"] = kernel_inception_distance(real_feats, fake_feats, seed=ctx.seed)
    results["precision"], results["recall"] = precision_recall(real_feats, fake_feats)
    if ctx.data == "builtin:shapes":
        results["mode_coverage"] = mode_coverage(fake_classes)
    else:
        log.info("mode coverage skipped: it counts the classes of builtin:shapes, not of %s", ctx.data)
    if inception is not None:
        check_enough_samples(len(real), FID_FEATURE_DIM, f"FID on the real images of {ctx.data}",
                             "that source has too few images; use a larger one")
        results["fid"] = frechet_distance(inception_features(inception, real, ctx.device),
                                          inception_features(inception, fake, ctx.device))
    return results


def _inception_model(ctx: EvalContext) -> FIDInceptionV3 | None:
    """pytorch-fid's Inception from ``ctx.options["inception_weights"]``, or None when not given."""
    weights = ctx.options.get("inception_weights")
    if not weights:
        return None
    model = load_fid_inception(weights).to(ctx.device)
    check_enough_samples(ctx.num_samples, FID_FEATURE_DIM, "FID")
    return model

