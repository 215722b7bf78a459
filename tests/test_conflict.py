"""trunk.gradients: how the modalities' gradients combine on the trunk blocks they share. The remedies'
mechanisms (PCGrad's combined gradient conflicts with no modality's; "normalized" gives every modality
the same weight), and in a run: only the shared blocks' gradient changes, and it is the combination."""

from __future__ import annotations

import pytest
import torch
from conftest import SPEECH_TINY, TINY, assert_one_line_error, tiny_args

from mmgan import config as cfg
from mmgan.contract.manager import get_modality
from mmgan.engine import Trainer, conflict


def test_pcgrad_removes_conflicts_and_leaves_agreeing_gradients_alone():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])  # dot -1: they conflict
    pa, pb = conflict.project_conflicts([a, b])
    assert torch.dot(pa, b) == pytest.approx(0, abs=1e-7) and torch.dot(pb, a) == pytest.approx(0, abs=1e-7)
    agree = [torch.tensor([1.0, 0.5]), torch.tensor([0.5, 1.0])]
    assert torch.equal(conflict.combine(agree, "pcgrad"), agree[0] + agree[1])
    # 3 modalities: the order PCGrad visits the others in comes from the generator, so a step is repeatable
    grads = list(torch.randn(3, 50, generator=torch.Generator().manual_seed(0)))
    first = conflict.combine(grads, "pcgrad", torch.Generator().manual_seed(7))
    assert torch.equal(first, conflict.combine(grads, "pcgrad", torch.Generator().manual_seed(7)))
    assert torch.isfinite(first).all()


def test_with_two_modalities_the_pcgrad_update_conflicts_with_neither():
    for seed in range(50):
        a, b = torch.randn(2, 30, generator=torch.Generator().manual_seed(seed))
        total = conflict.combine([a, b], "pcgrad")
        assert torch.dot(total, a) >= -1e-5 and torch.dot(total, b) >= -1e-5


def test_normalized_gives_each_modality_the_mean_norm():
    big, small = torch.tensor([30.0, 40.0]), torch.tensor([0.0, 0.1])
    scaled = conflict.balance_norms([big, small])
    assert [float(s.norm()) for s in scaled] == pytest.approx([25.05, 25.05])
    # a modality that gives the shared blocks nothing (its gate still at 0) shrinks no other
    assert torch.equal(conflict.combine([big, torch.zeros(2)], "normalized"), big)
    with pytest.raises(ValueError, match="trunk.gradients must be one of sum, pcgrad, normalized"):
        conflict.combine([big], "mean")


def test_only_blocks_several_modalities_go_through_are_shared():
    assert conflict.shared_blocks({"image": 1, "speech": -1}, 3) == [0]
    assert conflict.shared_blocks({"image": -1, "speech": -1}, 2) == [0, 1]
    assert conflict.shared_blocks({"image": 2, "speech": 0}, 2) == []


def _first_step_grads(tmp_path, method, extra=()):
    # a plain residual: its zero-initialised last layer gets a gradient at the first step (a bounded block's
    # gate starts at 0 and gives its block none)
    extra = ["trunk.depth=2", "image.trunk_depth=1", "trunk.residual=plain", f"trunk.gradients={method}", *extra]
    config = cfg.resolve(get_modality, plugins=["image", "speech"], out=tmp_path / method, steps=2, batch_size=2,
                         overrides=[*TINY, *SPEECH_TINY, *extra])
    trainer = Trainer(config, progress=False)
    trainer.train_step(trainer.batches())
    live = trainer.accelerator.unwrap_model(trainer.G)
    return {k: p.grad.clone() for k, p in live.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("method", ["pcgrad", "normalized"])
def test_in_a_run_only_the_shared_block_gets_the_combined_gradient(tmp_path, monkeypatch, method):
    plain = _first_step_grads(tmp_path, "sum")
    seen = []
    combine = conflict.combine

    def spy(grads, how, generator=None):
        seen.append(([g.clone() for g in grads], combine(grads, how, generator)))
        return seen[-1][1]

    monkeypatch.setattr(conflict, "combine", spy)
    remedied = _first_step_grads(tmp_path, method)
    assert len(seen) == 1 and len(seen[0][0]) == 2  # one G update, two modalities' gradients
    grads, combined = seen[0]
    assert all(g.norm() > 0 for g in grads)
    shared = [k for k in plain if k.startswith("trunk.blocks.0.")]
    assert shared and torch.allclose(torch.cat([remedied[k].flatten() for k in shared]), combined)
    # the modalities' own gradients add up to what one backward of the summed loss gives the shared block
    assert torch.allclose(grads[0] + grads[1], torch.cat([plain[k].flatten() for k in shared]), atol=1e-6)
    if method == "pcgrad":
        assert all(torch.dot(combined, g) >= -1e-6 for g in grads)
    for key in plain:  # every other parameter (stems, heads, FiLM, speech's own block) as with "sum"
        if key not in shared:
            assert torch.equal(plain[key], remedied[key]), key


def test_a_bad_trunk_gradients_value_is_one_line(tmp_path, cli_run):
    result = cli_run("run", "--plugin", "image", *tiny_args(tmp_path / "run", extra=("trunk.gradients=mean",)))
    assert_one_line_error(result, "trunk.gradients must be sum, pcgrad or normalized, got 'mean'")


def test_a_frozen_trunk_stays_frozen_under_a_remedy(tmp_path):
    # --freeze-trunk: the blocks take no gradient, so there is nothing to combine; FiLM and gates still train
    grads = _first_step_grads(tmp_path, "pcgrad", extra=["run.freeze_trunk=true"])
    assert not any(k.startswith("trunk.blocks.") for k in grads)
    assert any(k.startswith("trunk.film.") for k in grads) and any(k.startswith("heads.") for k in grads)
