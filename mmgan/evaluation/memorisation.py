"""Is a generator copying its training data? A data-copying test in the modality's feature space.

After Meehan, Chaudhuri and Dasgupta (2020, "A non-parametric test to detect data-copying in generative
models"): a generator that copies puts its samples nearer the training samples than new samples of the same
distribution are. For each generated sample and each held-out real sample, the distance to its nearest
training sample is measured in the modality's features (``ModalityPlugin.features``); a Mann-Whitney U test
compares the two sets of distances, and its Z score is the statistic: Z below :data:`THRESHOLD` (generated
samples significantly nearer the training set than held-out ones) is data-copying. This is the paper's test
over the whole space, without its cells (a copy of some training samples among good new samples can hide in
the global test; the paper's cells find it). Where the run has no held-out source (``<modality>.eval_data``),
its training set is split in two, the first half the reference and the second half the "held-out" samples,
and the verdict says so: the generator saw both halves, so the test is weaker there.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch

from mmgan.contract import calls
from mmgan.data.loading import open_training_data
from mmgan.errors import MetricError

#: Z of the Mann-Whitney test under which a generator copies (Meehan et al. 2020 flag Z < -3)
THRESHOLD = -3.0
#: the most training samples the nearest neighbours are searched among
MAX_TRAINING = 2000
#: the pairs (generated, nearest training sample) written for the report
PAIRS = 8


def _samples(dataset: Any, indices: list[int]) -> torch.Tensor:
    return torch.stack([dataset[i] for i in indices]).float()


def nearest(query: torch.Tensor, reference: torch.Tensor, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of ``query`` (N, d), the distance to the nearest row of ``reference`` (M, d) and its index."""
    distances, indices = [], []
    reference = reference.double()
    for block in query.double().split(chunk):
        d = torch.cdist(block, reference)
        best = d.min(dim=1)
        distances.append(best.values)
        indices.append(best.indices)
    return torch.cat(distances), torch.cat(indices)


def mann_whitney_z(generated: torch.Tensor, held_out: torch.Tensor) -> float:
    """Z of the Mann-Whitney U statistic of ``generated`` against ``held_out`` (negative: generated smaller)."""
    from scipy.stats import mannwhitneyu

    n1, n2 = len(generated), len(held_out)
    u = mannwhitneyu(generated.numpy(), held_out.numpy(), alternative="two-sided").statistic
    return float((u - n1 * n2 / 2) / math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12))


def memorisation(ctx: Any, train_source: str, run_seed: int, pairs_path: Path | None = None) -> dict[str, Any]:
    """The data-copying verdict of ``ctx``'s generator (an EvalContext of a run's export) against the run's
    training source ``train_source`` (read with the run's seed): ``copying``, ``statistic`` (Z),
    ``threshold``, the median distances, and what served as held-out data. With ``pairs_path`` the generated
    samples nearest their training neighbours are written there beside them (the modality's
    ``write_samples``: each generated sample followed by its neighbour)."""
    name, pm = ctx.name, ctx.pm
    config = dataclasses.replace(ctx.config, data=train_source) if dataclasses.is_dataclass(ctx.config) else ctx.config
    training = open_training_data(pm, name, config, run_seed)
    if isinstance(training, torch.utils.data.IterableDataset) or not hasattr(training, "__len__"):
        raise MetricError(f"{name}: the memorisation check needs a training source it can index, not a stream "
                          f"of shards ({train_source})")
    order = torch.randperm(len(training), generator=torch.Generator().manual_seed(run_seed)).tolist()
    held_out_source = ctx.data if ctx.data != train_source else ""
    if held_out_source:
        reference_ids = order[:MAX_TRAINING]
        held_out = torch.cat(list(ctx.real_batches()))
        used = f"{held_out_source} (held out)"
    else:  # no held-out source: the training set's second half plays it
        half = len(order) // 2
        reference_ids = order[:half][:MAX_TRAINING]
        held_out = _samples(training, order[half:][: ctx.num_samples])
        used = f"none: {train_source} split in two, the first half the reference (the generator saw both)"
    if len(reference_ids) < 2 or len(held_out) < 2:
        raise MetricError(f"{name}: the memorisation check needs at least 2 reference and 2 held-out samples, "
                          f"got {len(reference_ids)} and {len(held_out)}")
    reference = _samples(training, reference_ids)
    generated = torch.cat(list(ctx.fake_batches()))
    features = {key: calls.features(name, x, ctx.config, pm)
                for key, x in (("reference", reference), ("held_out", held_out), ("generated", generated))}
    gen_d, gen_nn = nearest(features["generated"], features["reference"])
    held_d, _ = nearest(features["held_out"], features["reference"])
    z = mann_whitney_z(gen_d, held_d)
    if pairs_path is not None:
        closest = gen_d.argsort()[:PAIRS]
        interleaved = torch.stack([x for i in closest.tolist() for x in (generated[i], reference[gen_nn[i]])])
        calls.write_samples(name, interleaved, pairs_path, ctx.config, None, pm)
    return {"copying": bool(z < THRESHOLD), "statistic": round(z, 3), "threshold": THRESHOLD,
            "test": "Mann-Whitney Z of nearest-training-sample distances, generated vs held-out",
            "generated_median": round(float(gen_d.median()), 6), "held_out_median": round(float(held_d.median()), 6),
            "generated": len(generated), "held_out_samples": len(held_out), "reference": len(reference),
            "held_out": used}
