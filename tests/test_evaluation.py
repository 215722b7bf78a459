"""The metric hook: any plugin adds metrics for any modality through ``mmgan_evaluate``; answers merge."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

import mmgan
from mmgan.contract.manager import _new_manager, get_modality
from mmgan.contract.modality import Modality, ModalityConfig
from mmgan.errors import PluginError
from mmgan.evaluation.scoring import EvalContext, evaluate


@dataclass
class DotsConfig(ModalityConfig):
    data: str = "builtin:dots"
    dim: int = 2


class DotsDataset(torch.utils.data.Dataset):
    def __init__(self, seed: int) -> None:
        self.points = torch.randn(500, 2, generator=torch.Generator().manual_seed(seed)) + 3.0

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.points[i]


class DotsPlugin:
    """A third-party modality: 2-D points, real ones around (3, 3)."""

    @mmgan.hookimpl
    def mmgan_register_modalities(self, register):
        register(Modality(name="dots", config_class=DotsConfig,
                          make_input=lambda real, config, gen: torch.randn(real.shape[0], 2, generator=gen),
                          sample_input=lambda n, config, gen: torch.randn(n, 2, generator=gen)))

    @mmgan.hookimpl
    def mmgan_read_data(self, modality, source, config, seed):
        return DotsDataset(seed) if modality == "dots" else None


class MeanMetric:
    """A third-party metric for any modality: distance between the real and generated means."""

    @mmgan.hookimpl
    def mmgan_evaluate(self, ctx):
        real, fake = torch.cat(list(ctx.real_batches())), torch.cat(list(ctx.fake_batches()))
        return {"mean_gap": (real.mean(0) - fake.mean(0)).norm().item()}


class NotMine:
    @mmgan.hookimpl
    def mmgan_evaluate(self, ctx):
        return None


def dots_context(pm, shift: float, seed: int = 0) -> EvalContext:
    generator = nn.Identity() if shift == 0 else _Shift(shift)
    return EvalContext(modality=get_modality("dots", pm), config=DotsConfig(), generator=generator,
                       data="builtin:dots", num_samples=300, batch_size=64, seed=seed, pm=pm)


class _Shift(nn.Module):
    def __init__(self, shift: float) -> None:
        super().__init__()
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


@pytest.fixture
def pm():
    manager = _new_manager()
    manager.register(DotsPlugin(), name="dots")
    manager.register(MeanMetric(), name="mean-metric")
    manager.register(NotMine(), name="not-mine")
    return manager


def test_a_third_party_plugin_adds_a_metric_through_the_hook(pm):
    good, bad = evaluate(dots_context(pm, 3.0)), evaluate(dots_context(pm, 0.0))
    assert set(good) == {"mean_gap"} and isinstance(good["mean_gap"], float)
    assert good["mean_gap"] < 0.3 < bad["mean_gap"]  # the generator shifted onto the real data scores better


def test_batches_are_seeded_and_sized(pm):
    ctx = dots_context(pm, 3.0)
    real, fake = list(ctx.real_batches()), list(ctx.fake_batches())
    assert [len(b) for b in real] == [64, 64, 64, 64, 44] == [len(b) for b in fake]
    assert torch.equal(torch.cat(real), torch.cat(list(dots_context(pm, 3.0).real_batches())))
    assert torch.equal(torch.cat(fake), torch.cat(list(dots_context(pm, 3.0).fake_batches())))
    assert not torch.equal(torch.cat(fake), torch.cat(list(dots_context(pm, 3.0, seed=1).fake_batches())))


def test_one_metric_name_from_two_plugins_is_an_error(pm):
    class Again(MeanMetric):
        pass
    pm.register(Again(), name="again")
    with pytest.raises(PluginError, match="mean_gap"):
        evaluate(dots_context(pm, 3.0))


def test_no_metric_plugin_gives_no_metrics(pm):
    pm.unregister(name="mean-metric")
    assert evaluate(dots_context(pm, 3.0)) == {}
