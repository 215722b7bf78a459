"""The EMA generator: its BatchNorm statistics are recomputed for its own weights before it is used."""

from __future__ import annotations

import torch
from safetensors.torch import load_file
from torch import nn

from mmgan import checkpoint
from mmgan.engine import Trainer
from mmgan.engine.ema import batchnorm_layers, recalibrate_batchnorm


def test_recalibration_gives_the_mean_and_variance_of_the_layers_own_activations():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=0.1)).eval()
    net[1].running_mean.fill_(5.0)  # stale statistics, as copied from another network
    inputs = [torch.randn(16, 3) * (i + 1) for i in range(4)]
    assert recalibrate_batchnorm(net, batchnorm_layers(net), inputs) == 4
    with torch.no_grad():
        acts = [net[0](x) for x in inputs]
    expected_mean = torch.stack([a.mean(0) for a in acts]).mean(0)
    expected_var = torch.stack([a.var(0, unbiased=True) for a in acts]).mean(0)
    torch.testing.assert_close(net[1].running_mean, expected_mean)
    torch.testing.assert_close(net[1].running_var, expected_var)
    # the layer is as it was: eval mode, its own momentum
    assert not net[1].training and net[1].momentum == 0.1


def test_recalibration_of_a_network_without_batchnorm_runs_nothing():
    calls = []
    assert recalibrate_batchnorm(calls.append, batchnorm_layers(nn.Linear(2, 2)), [torch.zeros(1, 2)]) == 0
    assert calls == []


def _export_and_live(run):
    state, _ = checkpoint.read_export(run, "image")
    live = load_file(str(checkpoint.checkpoint_dirs(run)[-1] / "model.safetensors"))
    return state, live


def test_the_exported_ema_generator_carries_statistics_of_its_own_weights(tiny_config, tmp_path):
    trainer = Trainer(tiny_config(tmp_path / "run", steps=6, extra=("train.ema_bn_batches=3",)), progress=False)
    trainer.fit()
    state, live = _export_and_live(tmp_path / "run")
    key = "heads.image.net.1.running_mean"
    assert not torch.equal(state[key], live[key]), "the export holds the live generator's statistics"
    # recomputing them from the exported weights gives the exported values again: they describe the EMA
    before = {k: v.clone() for k, v in trainer.ema.state_dict().items()}
    trainer._ema_ready_at = -1
    trainer.prepare_ema()
    for k, v in trainer.ema.state_dict().items():
        torch.testing.assert_close(v, before[k])
        torch.testing.assert_close(state[k], v)


def test_ema_bn_batches_0_keeps_the_live_generators_statistics(tiny_config, tmp_path):
    Trainer(tiny_config(tmp_path / "run", steps=4, extra=("train.ema_bn_batches=0",)), progress=False).fit()
    state, live = _export_and_live(tmp_path / "run")
    key = "heads.image.net.1.running_mean"
    assert torch.equal(state[key], live[key])
