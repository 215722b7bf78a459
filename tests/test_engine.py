"""The training loop: D frozen in the G step, EMA, exact resume, atomic checkpoints, export."""

import json
import logging
import os
import shutil

import pytest
import torch
from conftest import read_metrics

from mmgan import checkpoint
from mmgan.engine import Trainer
from mmgan.errors import CheckpointError, ConfigError
from mmgan.evaluation.inference import load_generator, sample


def test_generator_step_leaves_discriminator_gradients_untouched(tiny_config, tmp_path):
    trainer = Trainer(tiny_config(tmp_path / "run"), progress=False)
    snapshot = {}
    d_step = trainer.opt_d.step

    def record_then_step(*args, **kwargs):
        snapshot.update({n: p.grad.clone() for n, p in trainer.D.named_parameters()})
        return d_step(*args, **kwargs)

    trainer.opt_d.step = record_then_step
    trainer.train_step(trainer.batches())
    assert snapshot, "the discriminator step ran"
    for name, param in trainer.D.named_parameters():
        # the G step ran after opt_d.step: had D been trainable there, its .grad would have grown
        assert torch.equal(param.grad, snapshot[name]), name
        assert param.requires_grad, "D is trainable again after the G step"


def test_ema_trails_the_live_generator(tiny_config, tmp_path):
    trainer = Trainer(tiny_config(tmp_path / "run", extra=("train.ema_decay=0.999",)), progress=False)
    before = [p.clone() for p in trainer.ema.parameters()]
    batches = trainer.batches()
    for _ in range(3):
        trainer.train_step(batches)
        trainer.step += 1
    live = list(trainer.accelerator.unwrap_model(trainer.G).parameters())
    moved = [not torch.equal(b, e) for b, e in zip(before, trainer.ema.parameters(), strict=True)]
    differs = [not torch.equal(lv, e) for lv, e in zip(live, trainer.ema.parameters(), strict=True)]
    assert any(moved) and any(differs)
    assert not any(p.requires_grad for p in trainer.ema.parameters())


def test_ema_decay_0_samples_the_live_generator(tiny_config, tmp_path):
    # the image modality's default (docs/benchmarks.md): its EMA copy is the live weights at every step
    trainer = Trainer(tiny_config(tmp_path / "run"), progress=False)
    assert trainer.config.train.ema_decay == 0.0
    batches = trainer.batches()
    for _ in range(2):
        trainer.train_step(batches)
        trainer.step += 1
    live = list(trainer.accelerator.unwrap_model(trainer.G).parameters())
    assert all(torch.equal(lv, e) for lv, e in zip(live, trainer.ema.parameters(), strict=True))


def losses(run_dir):
    return read_metrics(run_dir)  # without the timings


def test_resume_reproduces_an_unbroken_run(tiny_config, tmp_path):
    # batch 16 of a 40-item set: 2 batches an epoch; resuming from step 3 starts mid-epoch (epoch 1,
    # batch 1), so the skipped-batch path is compared with the unbroken run, and then crosses epochs
    extra = ("train.checkpoint_every=3", "train.sample_every=100")
    full = Trainer(tiny_config(tmp_path / "full", steps=8, extra=extra, batch_size=16), progress=False).fit()

    broken = tmp_path / "broken"
    Trainer(tiny_config(broken, steps=7, extra=extra, batch_size=16), progress=False).fit()
    # simulate a kill after step 7 and losing the checkpoints of steps 6 and 7: step 3's is the latest
    shutil.rmtree(broken / "checkpoints" / "step_000007")
    shutil.rmtree(broken / "checkpoints" / "step_000006")
    assert len(read_metrics(broken)) == 7
    timed = read_metrics(broken, timing=True)
    resumed = Trainer(tiny_config(broken, steps=8, extra=extra, batch_size=16), resume=True, progress=False)
    assert resumed.step == 3
    # the seconds spent in training steps continue from the checkpoint's count, not from 0
    assert resumed.train_seconds == pytest.approx(timed[2]["train_s"], abs=2e-3)
    assert resumed.train_cpu_seconds == pytest.approx(timed[2]["train_cpu_s"], abs=2e-3)
    assert resumed.train_cpu_seconds > 0
    resumed.fit()
    seconds = [r["train_s"] for r in read_metrics(broken, timing=True)]
    assert all(b > a for a, b in zip(seconds[3:], seconds[4:], strict=False)) and seconds[3] > timed[2]["train_s"]

    expected, got = losses(full), losses(broken)
    assert [r["step"] for r in got] == list(range(1, 9))
    for a, b in zip(expected, got, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a["step"], key)
    ema_full = load_generator(full, "image")[0].state_dict()
    ema_resumed = load_generator(broken, "image")[0].state_dict()
    for key in ema_full:
        assert torch.allclose(ema_full[key].float(), ema_resumed[key].float(), atol=1e-5), key


@pytest.fixture(autouse=True)
def small_builtin_set(monkeypatch):
    """A 40-image built-in set keeps epochs short so tests cross epoch boundaries."""
    import mmgan_image.datasets as datasets

    original = datasets.ShapesDataset.__init__

    def short(self, size=64, length=50_000, seed=0):
        original(self, size=size, length=40, seed=seed)
    monkeypatch.setattr(datasets.ShapesDataset, "__init__", short)


def test_checkpoints_keep_the_last_k(tiny_config, tmp_path):
    run = Trainer(tiny_config(tmp_path / "run", steps=6,
                              extra=("train.checkpoint_every=1", "train.keep_checkpoints=2")), progress=False).fit()
    assert [p.name for p in checkpoint.checkpoint_dirs(run)] == ["step_000005", "step_000006"]
    assert not list((run / "checkpoints").glob(".*")), "no staging directory is left behind"


def test_crash_while_saving_leaves_the_previous_checkpoint_usable(tiny_config, tmp_path, monkeypatch):
    config = tiny_config(tmp_path / "run", steps=4, extra=("train.checkpoint_every=2",))
    trainer = Trainer(config, progress=False)

    def crash_after_two(*args, **kwargs):
        if trainer.step == 4:
            raise KeyboardInterrupt("killed while saving")
        return original(*args, **kwargs)

    original = checkpoint.write_extra_state
    monkeypatch.setattr(checkpoint, "write_extra_state", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    monkeypatch.undo()
    assert [p.name for p in checkpoint.checkpoint_dirs(config.run.out)] == ["step_000002"]
    resumed = Trainer(config, resume=True, progress=False)
    assert resumed.step == 2
    resumed.fit()
    assert not list((resumed.run_dir / "checkpoints").glob(".*")), "the half-written checkpoint is cleaned up"
    assert read_metrics(resumed.run_dir)[-1]["step"] == 4


def test_corrupt_checkpoint_is_a_clear_error(tiny_config, tmp_path):
    config = tiny_config(tmp_path / "run", steps=2)
    Trainer(config, progress=False).fit()
    latest = checkpoint.latest_checkpoint(config.run.out)
    (latest / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="step_000002 cannot be loaded"):
        Trainer(config, resume=True, progress=False)
    (latest / checkpoint.STATE_FILE).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="step_000002 is corrupt"):
        Trainer(config, resume=True, progress=False)


def test_export_is_safetensors_and_json_and_samples_deterministically(tiny_config, tmp_path):
    run = Trainer(tiny_config(tmp_path / "run", steps=2), progress=False).fit()
    meta = json.loads((run / "export" / "image.json").read_text())
    assert meta["modality"] == "image" and meta["step"] == 2 and meta["config"]["image_size"] == 32
    generator, config = load_generator(run, "image")
    a, b = sample(generator, "image", config, 5, seed=1), sample(generator, "image", config, 5, seed=1)
    assert a.shape == (5, 3, 32, 32) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1
    assert (run / "samples" / "image" / "step_000002.png").is_file()


def test_ema_half_life_ramps_with_training_and_is_capped():
    from mmgan.engine import ema_decay

    decays = [ema_decay(step, 0.999, 0.05) for step in range(0, 50_000, 250)]
    assert decays == sorted(decays) and decays[-1] == 0.999
    assert ema_decay(500, 0.999, 0.05) == pytest.approx(0.5 ** (1 / (0.05 * 501)))
    assert ema_decay(3, 0.9, 0.0) == 0.9


def test_bf16_mixed_precision_trains_without_nan(tiny_config, tmp_path):
    config = tiny_config(tmp_path / "run", steps=3,
                         extra=("train.mixed_precision=bf16", "train.channels_last=true"))
    run = Trainer(config, progress=False).fit()
    for record in read_metrics(run):
        assert all(torch.isfinite(torch.tensor(v)) for v in record.values()), record
    generator, cfg = load_generator(run, "image")
    assert torch.isfinite(sample(generator, "image", cfg, 4, seed=0)).all()


def test_trunk_depth_zero_is_the_papers_network(tiny_config, tmp_path):
    trainer = Trainer(tiny_config(tmp_path / "run", extra=("trunk.depth=0",)), progress=False)
    assert not list(trainer.accelerator.unwrap_model(trainer.G).trunk.blocks)
    trainer.fit()


def test_resume_after_a_crash_mid_log_line_and_past_the_end(tiny_config, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mmgan")
    config = tiny_config(tmp_path / "run", steps=2)
    run = Trainer(config, progress=False).fit()
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "image/d/ad')  # the process died while appending
    config.train.steps = 3
    Trainer(config, resume=True, progress=False).fit()
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3]
    before = (run / "metrics.jsonl").read_bytes()
    assert Trainer(config, resume=True, progress=False).fit() == run  # already at step 3: nothing to do
    assert (run / "metrics.jsonl").read_bytes() == before
    assert "already at step 3" in caplog.text


def test_a_finished_run_is_never_overwritten_through_the_api(tiny_config, tmp_path):
    config = tiny_config(tmp_path / "run", steps=1)
    Trainer(config, progress=False).fit()
    before = (tmp_path / "run" / "metrics.jsonl").read_bytes()
    with pytest.raises(CheckpointError, match="already holds a run"):
        Trainer(config, progress=False)
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == before


def test_damaged_progress_and_export_json_are_clear_errors(tiny_config, tmp_path):
    config = tiny_config(tmp_path / "run", steps=1)
    run = Trainer(config, progress=False).fit()
    (checkpoint.latest_checkpoint(run) / checkpoint.PROGRESS_FILE).write_text("[1]")
    with pytest.raises(CheckpointError, match="is corrupt"):
        Trainer(config, resume=True, progress=False)
    meta = run / "export" / "image.json"
    good = json.loads(meta.read_text())
    meta.write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_generator(run, "image")
    meta.write_text(json.dumps({**good, "config": {**good["config"], "image_size": 48}}))
    with pytest.raises(ConfigError, match="image.json: image_size must be 32 or 64"):
        load_generator(run, "image")


def test_a_modality_can_choose_its_own_adversarial_loss(tiny_config, tmp_path):
    from mmgan.losses import HingeLoss, NonSaturatingLoss

    trainer = Trainer(tiny_config(tmp_path / "a", extra=("image.loss=hinge",)), progress=False)
    assert isinstance(trainer.adversarial["image"], HingeLoss)
    trainer = Trainer(tiny_config(tmp_path / "b"), progress=False)
    assert isinstance(trainer.adversarial["image"], NonSaturatingLoss)
    with pytest.raises(Exception, match="unknown adversarial loss 'wgan'"):
        Trainer(tiny_config(tmp_path / "c", extra=("image.loss=wgan",)), progress=False)


def test_a_run_that_died_before_its_first_log_can_be_started_again(tiny_config, tmp_path):
    config = tiny_config(tmp_path / "run", steps=1)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.toml").write_text("# written, then the first step crashed\n")
    Trainer(config, progress=False).fit()
    assert read_metrics(tmp_path / "run")[-1]["step"] == 1


def test_sample_steps_reuse_the_same_fixed_inputs(tiny_config, tmp_path):
    trainer = Trainer(tiny_config(tmp_path / "run", steps=4, extra=("train.sample_every=2",)), progress=False)
    first = trainer.fixed_inputs("image")
    trainer.fit()
    assert trainer.fixed_inputs("image") is first
    assert torch.equal(first[0], Trainer._build_fixed_inputs(trainer, "image")[0])


def test_bf16_training_leaves_autocast_off_for_what_follows(tiny_config, tmp_path):
    # Accelerate patches a prepared model's forward with one autocast object; calling that forward again
    # from inside itself used to leave autocast on after the step, so sample writers got bfloat16 tensors
    trainer = Trainer(tiny_config(tmp_path / "bf", steps=1, extra=("train.mixed_precision=bf16",)), progress=False)
    trainer.train_step(trainer.batches())
    assert not torch.is_autocast_enabled("cpu")


def test_a_second_run_on_a_run_directory_in_use_is_refused_and_writes_nothing(tiny_config, tmp_path, cli_run):
    from conftest import assert_one_line_error, tiny_args

    from mmgan.engine.rundir import RunDirectory
    from mmgan.errors import CheckpointError

    run = tmp_path / "run"
    holder = RunDirectory(run)
    holder.lock()  # as a first `mmgan run` holds it while it trains
    try:
        with pytest.raises(CheckpointError, match=f"in use by another mmgan process \\(pid {os.getpid()} on "):
            Trainer(tiny_config(run, steps=1), progress=False).fit()
        assert_one_line_error(cli_run("run", "--plugin", "image", *tiny_args(run, steps=1)), "in use", str(run))
        assert not (run / "metrics.jsonl").exists() and not (run / "config.toml").exists()
    finally:
        holder.unlock()
    # released: the run can start, and after it the directory is free again for a resume
    Trainer(tiny_config(run, steps=1), progress=False).fit()
    Trainer(tiny_config(run, steps=2), resume=True, progress=False).fit()
    assert [r["step"] for r in read_metrics(run)] == [1, 2]


def test_resume_with_a_new_learning_rate_trains_at_it_and_keeps_adam_s_moments(cli_run, tmp_path):
    from conftest import tiny_args

    run_dir = tmp_path / "run"
    assert cli_run("run", "--plugin", "image", *tiny_args(run_dir, steps=2)).exit_code == 0
    # a lower rate for the rest of a run (what one tries when the adversarial phase degrades)
    result = cli_run("run", "--resume", str(run_dir), "--steps", "4", "--set", "train.lr_g=1e-5",
                     "--set", "train.beta1=0.8")
    assert result.exit_code == 0, result.output
    g, d = (torch.load(run_dir / "checkpoints" / "step_000004" / name, weights_only=True)
            for name in ("optimizer.bin", "optimizer_1.bin"))
    settings = {(grp["lr"], grp["base_lr"], tuple(grp["betas"])) for grp in g["param_groups"]}
    assert settings == {(1e-5, 1e-5, (0.8, 0.999))}
    assert {(grp["lr"], tuple(grp["betas"])) for grp in d["param_groups"]} == {(2e-4, (0.8, 0.999))}
    # the moments came from the checkpoint: Adam's step count went on from 2, not from 0
    assert {float(s["step"]) for s in g["state"].values()} == {4.0}
