"""Loss terms that draw random numbers: LossContext.rng makes them reproducible and resume exact."""

from __future__ import annotations

import pytest
import torch
from conftest import read_metrics

import mmgan
from mmgan.contract.manager import get_plugin_manager
from mmgan.engine import Trainer
from mmgan.losses import LossContext


class NoisyTerm:
    """A generator loss term with random weights, as a noise-injection regulariser would draw them."""

    @mmgan.hookimpl
    def mmgan_generator_loss_terms(self, ctx):
        g = ctx.rng("noisy-term")
        weights = torch.rand(ctx.fake.shape, generator=g)
        return {"noisy": 0.1 * (ctx.fake * weights).mean()}


@pytest.fixture
def noisy_term():
    pm = get_plugin_manager()
    plugin = NoisyTerm()
    pm.register(plugin, name="noisy-term")
    yield plugin
    pm.unregister(plugin)


def _context(**kw):
    base = dict(modality="image", config=None, step=3, real=torch.zeros(2), fake=torch.zeros(2),
                generator_input=torch.zeros(2), d_fake=None, discriminator=lambda x: x, seed=7, rank=0, kind="g")
    return LossContext(**(base | kw))


def test_rng_depends_on_step_rank_modality_half_and_plugin_name_only():
    draw = lambda ctx, name="p": torch.rand(4, generator=ctx.rng(name))  # noqa: E731
    assert torch.equal(draw(_context()), draw(_context()))
    for change in ({"step": 4}, {"rank": 1}, {"modality": "speech"}, {"kind": "d"}, {"seed": 8}):
        assert not torch.equal(draw(_context()), draw(_context(**change))), change
    assert not torch.equal(draw(_context()), draw(_context(), name="other"))


def test_a_random_loss_term_resumes_exactly(tiny_config, tmp_path, noisy_term):
    Trainer(tiny_config(tmp_path / "unbroken", steps=4), progress=False).fit()
    Trainer(tiny_config(tmp_path / "broken", steps=2), progress=False).fit()
    Trainer(tiny_config(tmp_path / "broken", steps=4), resume=True, progress=False).fit()
    unbroken, resumed = read_metrics(tmp_path / "unbroken"), read_metrics(tmp_path / "broken")
    assert [r["image/g/noisy"] for r in unbroken] == [r["image/g/noisy"] for r in resumed]
    assert [r["image/d/adv"] for r in unbroken] == [r["image/d/adv"] for r in resumed]
