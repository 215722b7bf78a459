"""A run of several modalities: each keeps its own steps, batch, optimiser and EMA decay (issue 14)."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from conftest import SPEECH_TINY, TINY, read_metrics

from mmgan import config as cfg
from mmgan.contract.manager import get_modality
from mmgan.engine import Trainer
from mmgan.errors import ConfigError


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


def multitask(out, steps=4, extra=()):
    return cfg.resolve(get_modality, plugins=["image", "speech"], out=out, steps=steps, batch_size=2,
                       overrides=[*TINY, *SPEECH_TINY, "train.checkpoint_every=2", "train.sample_every=100",
                                  *extra])


def test_the_defaults_of_a_multi_task_run_keep_each_modality_s_own_settings(caplog):
    config = cfg.resolve(get_modality, plugins=["image", "speech"], out="runs/x")
    image, speech = get_modality("image").train_defaults, get_modality("speech").train_defaults
    for name, suggested in (("image", image), ("speech", speech)):
        for key in cfg.OWN_KEYS:
            if key in suggested:
                assert getattr(config.modalities[name], key) == suggested[key], (name, key)
    assert config.train.steps == max(image["steps"], speech["steps"])
    # the trunk's EMA averages no more than the modality that averages least
    assert config.train.ema_decay == min(cfg.own_value(config, n, "ema_decay") for n in ("image", "speech"))
    assert (config.modalities["image"].ema_decay, config.modalities["speech"].ema_decay) == (
        image["ema_decay"], cfg.TrainConfig().ema_decay)  # speech keeps the core's, image its own
    assert cfg.own_value(config, "speech", "lr_g") == speech["lr_g"] != cfg.own_value(config, "image", "lr_g")
    text = cfg.to_toml(config)  # the resolved values are recorded
    assert f"steps = {speech['steps']}" in text and f"steps = {image['steps']}" in text


def test_a_modality_stops_at_its_own_steps_while_the_other_and_the_trunk_go_on(tmp_path):
    config = multitask(tmp_path / "run", extra=["image.steps=2", "speech.lr_g=1e-3", "speech.beta1=0.8",
                                                "image.ema_decay=0", "speech.ema_decay=0.999"])
    trainer = Trainer(config, progress=False)
    groups = {(g["mmgan_group"], g["lr"], g["betas"]) for g in trainer.parts.opt_g.param_groups}
    own = {name: (cfg.own_value(config, name, "lr_g"), (cfg.own_value(config, name, "beta1"),
                                                        cfg.own_value(config, name, "beta2")))
           for name in ("image", "speech")}
    assert own["speech"][0] == 1e-3 and own["speech"][1][0] == 0.8
    assert ("speech", *own["speech"]) in groups and ("image", *own["image"]) in groups  # stems and heads
    assert any(g[0] == "trunk" and g[1] == config.train.lr_g for g in groups)  # the trunk keeps [train]'s
    live = trainer.accelerator.unwrap_model(trainer.G)
    batches = trainer.batches()
    for _ in range(2):
        trainer.train_step(batches)
        trainer.step += 1
    image_parts = {"stem": snapshot(live.stems["image"]), "head": snapshot(live.heads["image"]),
                   "d": snapshot(trainer.accelerator.unwrap_model(trainer.D).discriminators["image"])}
    speech_head, trunk = snapshot(live.heads["speech"]), snapshot(live.trunk.blocks)
    for _ in range(2):
        losses = trainer.train_step(batches)
        trainer.step += 1
    assert not any(k.startswith("image/") for k in losses) and "speech/g/mel" in losses
    assert not changed(image_parts["stem"], live.stems["image"]) and not changed(image_parts["head"],
                                                                                  live.heads["image"])
    assert not changed(image_parts["d"], trainer.accelerator.unwrap_model(trainer.D).discriminators["image"])
    assert changed(speech_head, live.heads["speech"]) and changed(trunk, live.trunk.blocks)
    # EMA decay per modality: image's 0 copies its live weights, speech's 0.999 lags behind
    for key, value in live.heads["image"].state_dict().items():
        assert torch.equal(trainer.ema.heads["image"].state_dict()[key], value), key
    assert any(not torch.equal(trainer.ema.heads["speech"].state_dict()[k], v)
               for k, v in live.heads["speech"].state_dict().items())


@pytest.mark.slow
def test_resume_is_exact_across_a_modality_s_last_step(tmp_path):
    extra = ["image.steps=3", "speech.lr_g=1e-3"]
    Trainer(multitask(tmp_path / "full", extra=extra), progress=False).fit()
    Trainer(multitask(tmp_path / "broken", extra=extra), progress=False).fit()
    shutil.rmtree(tmp_path / "broken" / "checkpoints" / "step_000004")
    resumed = cfg.resolve(get_modality, resume_dir=tmp_path / "broken")
    trainer = Trainer(resumed, resume=True, progress=False)
    assert trainer.step == 2
    trainer.fit()
    full, again = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "broken")
    assert [r["step"] for r in again] == [1, 2, 3, 4]
    assert [sorted(k for k in r if k.startswith("image/")) for r in full][3] == []  # image done after step 3
    for a, b in zip(full, again, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a["step"], key)


def test_steps_and_batch_size_flags_are_every_modality_s_and_bad_values_are_one_line(tmp_path):
    config = cfg.resolve(get_modality, plugins=["image", "speech"], out="runs/x", steps=7, batch_size=3)
    assert config.train.steps == 7 and all(m.steps == 0 and m.batch_size == 0 for m in config.modalities.values())
    assert cfg.own_value(config, "speech", "steps") == 7
    for setting, fragment in (("image.beta1=1.5", "image.beta1 must be in [0, 1) or -1"),
                              ("speech.lr_g=-1", "speech.lr_g must be >= 0"),
                              ("image.steps=-2", "image.steps must be >= 0")):
        with pytest.raises(cfg.ConfigError, match=re.escape(fragment)):
            cfg.resolve(get_modality, plugins=["image", "speech"], out="runs/x", overrides=[setting])


def _groups_of(trainer, params):
    ids = {id(p) for p in params}
    return {(g["mmgan_group"], g["lr"], g["betas"]) for g in trainer.parts.opt_g.param_groups
            if ids & {id(p) for p in g["params"]}}


def test_a_trunk_block_only_one_modality_goes_through_trains_and_averages_as_its_own(tmp_path):
    extra = ["trunk.depth=3", "image.trunk_depth=1", "speech.lr_g=1e-3", "speech.beta1=0.8",
             "image.ema_decay=0", "speech.ema_decay=0.9", "train.ema_rampup=0", "trunk.residual=plain"]
    config = multitask(tmp_path / "run", extra=extra)
    assert config.trunk.exclusive_blocks == "owner"
    trainer = Trainer(config, progress=False)
    live = trainer.accelerator.unwrap_model(trainer.G)
    speech_own = ("speech", 1e-3, (0.8, cfg.own_value(config, "speech", "beta2")))
    # block 0 is shared (image goes through it too): [train]'s; blocks 1 and 2 are speech's alone
    assert _groups_of(trainer, live.trunk.blocks[0].parameters()) == {
        ("trunk", config.train.lr_g, (config.train.beta1, config.train.beta2))}
    assert _groups_of(trainer, [*live.trunk.blocks[1].parameters(), *live.trunk.blocks[2].parameters()]) == {speech_own}
    # speech's FiLM and gates (which weigh its private blocks) at its rate too
    assert _groups_of(trainer, [live.trunk.film["speech"]]) == {speech_own}
    before = {k: v.detach().clone() for k, v in live.trunk.blocks[2].named_parameters()}
    trainer.train_step(trainer.batches())
    # the trunk's EMA decay is the smallest (image's 0): block 0's EMA is its live weights; speech's own
    # block averages at speech's 0.9: 0.9 x its start + 0.1 x its new weights
    ema = trainer.ema.trunk.blocks
    assert all(torch.equal(ema[0].state_dict()[k], v) for k, v in live.trunk.blocks[0].state_dict().items())
    assert any(not torch.equal(v, before[k]) for k, v in live.trunk.blocks[2].named_parameters())
    averaged = dict(ema[2].named_parameters())
    for k, v in live.trunk.blocks[2].named_parameters():
        assert torch.allclose(averaged[k], torch.lerp(before[k], v.detach(), 0.1), atol=1e-7), k


def test_shared_exclusive_blocks_keep_every_block_at_the_trunk_s_settings_as_older_runs_did(tmp_path):
    extra = ["trunk.depth=3", "image.trunk_depth=1", "speech.lr_g=1e-3", "trunk.exclusive_blocks=shared"]
    config = multitask(tmp_path / "run", extra=extra)
    trainer = Trainer(config, progress=False)
    live = trainer.accelerator.unwrap_model(trainer.G)
    assert {g[0] for g in _groups_of(trainer, live.trunk.blocks.parameters())} == {"trunk"}
    # a run written before the key existed resumes with its old meaning
    config.trunk.exclusive_blocks = "owner"
    (tmp_path / "run").mkdir(exist_ok=True)
    (tmp_path / "run" / "config.toml").write_text("\n".join(
        line for line in cfg.to_toml(config).splitlines() if not line.startswith("exclusive_blocks")) + "\n")
    assert cfg.resolve(get_modality, resume_dir=tmp_path / "run").trunk.exclusive_blocks == "shared"
    with pytest.raises(ConfigError, match="trunk.exclusive_blocks must be owner or shared, got 'mine'"):
        multitask(tmp_path / "bad", extra=["trunk.exclusive_blocks=mine"])


@pytest.mark.slow
def test_a_finished_modality_keeps_the_samples_evaluation_and_export_of_its_own_last_step(tmp_path):
    # image's last step (3) is on no interval: it is written there anyway, and not again at the loop's end,
    # where the trunk has moved on for speech
    run = tmp_path / "run"
    config = multitask(run, steps=4, extra=["image.steps=3", "train.sample_every=2", "train.eval_every=2",
                                             "image.eval_samples=130", "speech.eval_samples=2"])
    Trainer(config, progress=False).fit()
    steps = {name: sorted({p.stem for p in (run / "samples" / name).iterdir()}) for name in ("image", "speech")}
    assert steps == {"image": ["step_000002", "step_000003"], "speech": ["step_000002", "step_000004"]}
    exported = {name: json.loads((run / "export" / f"{name}.json").read_text())["step"]
                for name in ("image", "speech")}
    assert exported == {"image": 3, "speech": 4}
    evaluated = {r["step"]: sorted({k.split("/")[0] for k in r if "/eval/" in k})
                 for r in read_metrics(run) if any("/eval/" in k for k in r)}
    assert evaluated == {2: ["image", "speech"], 3: ["image"], 4: ["speech"]}


def test_resuming_at_a_modality_s_last_step_writes_its_export_if_a_stop_lost_it(tmp_path):
    # a stop between the checkpoint of image's last step and its export: resuming there writes it
    run = tmp_path / "run"
    Trainer(multitask(run, steps=4, extra=["image.steps=2"]), progress=False).fit()
    shutil.rmtree(run / "checkpoints" / "step_000004")
    for path in (run / "export").glob("image.*"):
        path.unlink()
    trainer = Trainer(cfg.resolve(get_modality, resume_dir=run), resume=True, progress=False)
    assert trainer.step == 2
    trainer.fit()
    assert json.loads((run / "export" / "image.json").read_text())["step"] == 2
