"""The speech plugin end to end: training steps, samples, vocode (chunked == unchunked), multi-task."""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import SPEECH_TINY, TINY, TINY_CORE, assert_one_line_error, read_metrics

from mmgan import config as cfg
from mmgan.contract.manager import get_modality
from mmgan.engine import Trainer
from mmgan.errors import ConfigError
from mmgan.evaluation.inference import load_generator
from mmgan_speech.audio import read_wav, write_wav
from mmgan_speech.networks import remove_weight_norm
from mmgan_speech.vocode import read_mel_input, vocode

# MelGAN's real layers, narrowed for a CPU test: 2048-sample segments = 8 mel frames


def speech_args(out, steps=2, extra=()):
    args = ["--out", str(out), "--steps", str(steps), "--batch-size", "2", "--no-progress"]
    for item in (*TINY_CORE, *SPEECH_TINY, *extra):
        args += ["--set", item]
    return args


@pytest.fixture(scope="module")
def speech_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("speech") / "run"
    config = cfg.resolve(get_modality, plugins=["speech"], out=run, steps=3, batch_size=2,
                         overrides=[*TINY_CORE, *SPEECH_TINY, "train.sample_every=3", "speech.stft_weight=1"])
    Trainer(config, progress=False).fit()
    return run


def test_speech_trains_with_its_loss_terms_and_writes_samples(speech_run):
    record = read_metrics(speech_run)[-1]
    for key in ("speech/d/adv", "speech/g/adv", "speech/g/fm", "speech/g/mel", "speech/g/stft"):
        assert np.isfinite(record[key]), (key, record)
    assert min(record["speech/g/fm"], record["speech/g/mel"], record["speech/g/stft"]) > 0
    samples = speech_run / "samples" / "speech"
    wav, png = samples / "step_000003.wav", samples / "step_000003.png"
    assert png.is_file()
    clips = read_wav(wav)
    assert len(clips) > 2 * 2048  # the clips, joined with gaps


def test_vocode_wav_and_mel_round_trip(speech_run, tmp_path, cli_run):
    wave = 0.5 * np.sin(2 * np.pi * 220 * np.arange(256 * 40) / 22050).astype(np.float32)
    write_wav(tmp_path / "in.wav", wave, 22050)
    result = cli_run("vocode", speech_run, tmp_path / "in.wav", "-o", tmp_path / "out.wav")
    assert result.exit_code == 0, result.output
    assert len(read_wav(tmp_path / "out.wav")) == 256 * 40

    mel = read_mel_input(tmp_path / "in.wav").numpy()
    assert mel.shape == (80, 40)
    np.save(tmp_path / "mel.npy", mel)
    result = cli_run("vocode", speech_run, tmp_path / "mel.npy", "-o", tmp_path / "out2.wav")
    assert result.exit_code == 0, result.output
    assert np.allclose(read_wav(tmp_path / "out2.wav"), read_wav(tmp_path / "out.wav"), atol=2e-4)


def test_chunked_vocoding_equals_unchunked(speech_run):
    generator, _ = load_generator(speech_run, "speech")
    remove_weight_norm(generator)
    mel = torch.randn(80, 300) - 5
    whole = vocode(generator, mel, chunk_frames=10_000)
    for chunk in (7, 64, 299):
        assert torch.allclose(vocode(generator, mel, chunk_frames=chunk), whole, atol=1e-5), chunk


def test_bad_vocode_inputs(speech_run, tmp_path, cli_run):
    np.save(tmp_path / "wrong.npy", np.zeros((40, 80), np.float32))
    assert_one_line_error(cli_run("vocode", speech_run, tmp_path / "wrong.npy", "-o", tmp_path / "o.wav"),
                          "wrong.npy", "(80, frames)")
    np.save(tmp_path / "ints.npy", np.zeros((80, 10), np.int64))
    assert_one_line_error(cli_run("vocode", speech_run, tmp_path / "ints.npy", "-o", tmp_path / "o.wav"),
                          "float array")
    (tmp_path / "text.wav").write_text("not audio")
    assert_one_line_error(cli_run("vocode", speech_run, tmp_path / "text.wav", "-o", tmp_path / "o.wav"), "text.wav")
    assert not (tmp_path / "o.wav").exists()


def test_multi_task_shares_one_trunk_that_learns_from_both(tmp_path):
    config = cfg.resolve(get_modality, plugins=["image", "speech"], out=tmp_path / "mt", steps=2, batch_size=2,
                         overrides=[*TINY, *SPEECH_TINY])
    trainer = Trainer(config, progress=False)
    generators = trainer.accelerator.unwrap_model(trainer.G)
    assert generators.stems.keys() == {"image", "speech"}
    trunk_params = list(generators.trunk.parameters())
    for name, dataset in trainer.datasets.items():
        modality = trainer.modalities[name]
        real = torch.stack([dataset[0], dataset[1]])
        generators.zero_grad()
        fake = generators(name, modality.make_input(real, config.modalities[name], torch.Generator()))
        fake.square().mean().backward()
        grads = [p.grad for p in trunk_params if p.grad is not None and p.grad.abs().sum() > 0]
        assert grads, f"the trunk received no gradient from {name}"
    trainer.fit()
    keys = set(read_metrics(tmp_path / "mt")[-1])
    assert {"image/g/adv", "speech/g/adv", "speech/g/mel"} <= keys


def test_each_modality_of_a_multi_task_run_can_have_its_own_batch_size(tmp_path):
    config = cfg.resolve(get_modality, plugins=["image", "speech"], out=tmp_path / "mb", steps=1, batch_size=4,
                         overrides=[*TINY, *SPEECH_TINY, "speech.batch_size=2"])
    trainer = Trainer(config, progress=False)
    batches = {name: next(it) for name, it in trainer.batches().items()}
    assert batches["image"].shape[0] == 4 and batches["speech"].shape[0] == 2
    trainer.fit()
    assert read_metrics(tmp_path / "mb")[-1]["step"] == 1
    with pytest.raises(ConfigError, match="speech.batch_size must be >= 0"):
        cfg.resolve(get_modality, plugins=["speech"], out=tmp_path / "x", overrides=["speech.batch_size=-1"])


def test_init_trunk_seeds_speech_from_an_image_run(tmp_path, cli_run):
    image_run = tmp_path / "img"
    config = cfg.resolve(get_modality, plugins=["image"], out=image_run, steps=2, batch_size=4, overrides=TINY)
    Trainer(config, progress=False).fit()
    image_trunk = load_generator(image_run, "image")[0].trunk

    config = cfg.resolve(get_modality, plugins=["speech"], out=tmp_path / "sp", steps=1, batch_size=2,
                         overrides=[*TINY_CORE, *SPEECH_TINY, f"run.init_trunk={image_run}"])
    trainer = Trainer(config, progress=False)
    trunk = trainer.accelerator.unwrap_model(trainer.G).trunk
    for (key, ours), (_, theirs) in zip(trunk.blocks.state_dict().items(), image_trunk.blocks.state_dict().items(),
                                        strict=True):
        assert torch.equal(ours, theirs), key
    assert not trunk.film["speech"].any(), "a modality the image run did not have keeps the identity FiLM"

    result = cli_run("run", "--plugin", "speech", *speech_args(tmp_path / "bad", extra=("trunk.width=48",)),
                     "--init-trunk", image_run)
    assert_one_line_error(result, "does not fit this run's trunk")
    assert_one_line_error(cli_run("run", "--plugin", "speech", *speech_args(tmp_path / "bad2"),
                                  "--init-trunk", tmp_path), "no exported generator")


def test_init_trunk_between_trunks_of_different_depths(tmp_path):
    """The image default goes through 2 blocks' trunk, speech suggests 8: a run seeds the other with the
    blocks both have, in both directions, and the rest keep their initialisation."""
    shallow = tmp_path / "img"
    config = cfg.resolve(get_modality, plugins=["image"], out=shallow, steps=2, batch_size=4, overrides=TINY)
    Trainer(config, progress=False).fit()
    image_trunk = load_generator(shallow, "image")[0].trunk

    config = cfg.resolve(get_modality, plugins=["speech"], out=tmp_path / "deep", steps=1, batch_size=2,
                         overrides=[*TINY_CORE, *SPEECH_TINY, "trunk.depth=3", f"run.init_trunk={shallow}"])
    trainer = Trainer(config, progress=False)
    trunk = trainer.accelerator.unwrap_model(trainer.G).trunk
    fresh = Trainer(cfg.resolve(get_modality, plugins=["speech"], out=tmp_path / "fresh", steps=1, batch_size=2,
                                overrides=[*TINY_CORE, *SPEECH_TINY, "trunk.depth=3"]), progress=False)
    fresh_trunk = fresh.accelerator.unwrap_model(fresh.G).trunk
    for key, value in image_trunk.blocks[0].state_dict().items():
        assert torch.equal(trunk.blocks[0].state_dict()[key], value), key
    for i in (1, 2):  # blocks the image run did not have: as a run without --init-trunk builds them
        for key, value in fresh_trunk.blocks[i].state_dict().items():
            assert torch.equal(trunk.blocks[i].state_dict()[key], value), (i, key)
    trainer.fit()

    config = cfg.resolve(get_modality, plugins=["image"], out=tmp_path / "back", steps=1, batch_size=4,
                         overrides=[*TINY, f"run.init_trunk={tmp_path / 'deep'}"])
    back = Trainer(config, progress=False)
    speech_trunk = load_generator(tmp_path / "deep", "speech")[0].trunk
    for key, value in speech_trunk.blocks[0].state_dict().items():
        assert torch.equal(back.accelerator.unwrap_model(back.G).trunk.blocks[0].state_dict()[key], value), key


@pytest.mark.slow
def test_freeze_trunk_keeps_the_transferred_blocks_and_trains_film(tmp_path, cli_run):
    image_run = tmp_path / "img"
    config = cfg.resolve(get_modality, plugins=["image"], out=image_run, steps=2, batch_size=4, overrides=TINY)
    Trainer(config, progress=False).fit()
    image_trunk = load_generator(image_run, "image")[0].trunk
    # a deeper trunk than the image run's (1 block): the block it gives stays, the other one trains
    run = tmp_path / "sp"
    result = cli_run("run", "--plugin", "speech", *speech_args(run, steps=3, extra=("trunk.depth=2",)),
                     "--init-trunk", image_run, "--freeze-trunk")
    assert result.exit_code == 0, result.output
    trunk = load_generator(run, "speech")[0].trunk
    for key, value in image_trunk.blocks.state_dict().items():
        assert torch.equal(trunk.blocks.state_dict()[key], value), key
    assert trunk.film["speech"].abs().sum() > 0  # the modality's FiLM adapted the frozen trunk
    fresh = Trainer(cfg.resolve(get_modality, plugins=["speech"], out=tmp_path / "fresh", steps=1, batch_size=2,
                                overrides=[*TINY_CORE, *SPEECH_TINY, "trunk.depth=2"]), progress=False)
    untrained = fresh.accelerator.unwrap_model(fresh.G).trunk.blocks[1].state_dict()
    assert any(not torch.equal(trunk.blocks[1].state_dict()[k], v) for k, v in untrained.items())
    text = (run / "config.toml").read_text()
    assert "freeze_trunk = true" in text and "frozen_blocks = 1" in text
    # resumed, the same block stays frozen (the source run is not needed again)
    shutil.rmtree(image_run)
    assert cli_run("run", "--resume", str(run), "--steps", "4").exit_code == 0
    again = load_generator(run, "speech")[0].trunk
    for key, value in trunk.blocks[0].state_dict().items():
        assert torch.equal(again.blocks[0].state_dict()[key], value), key
    assert any(not torch.equal(again.blocks[1].state_dict()[k], v) for k, v in trunk.blocks[1].state_dict().items())


def test_speech_run_from_the_command_line_on_a_wav_folder(tmp_path, cli_run):
    folder = tmp_path / "LJSpeech-1.1"
    (folder / "wavs").mkdir(parents=True)
    t = np.arange(22050) / 22050
    for i in range(3):
        write_wav(folder / "wavs" / f"LJ001-000{i}.wav", 0.5 * np.sin(2 * np.pi * (150 + 50 * i) * t), 22050)
    (folder / "metadata.csv").write_text("".join(f"LJ001-000{i}|text|text\n" for i in range(3)))
    run = tmp_path / "run"
    result = cli_run("run", "--plugin", "speech", "--data", folder, *speech_args(run, steps=2))
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in read_metrics(run)] == [1, 2]
    assert (run / "export" / "speech.safetensors").is_file()
    (folder / "wavs").rename(folder / "elsewhere")
    assert_one_line_error(cli_run("run", "--plugin", "speech", "--data", folder, *speech_args(tmp_path / "r2")),
                          "wavs")


def test_more_bad_speech_input_is_one_line(speech_run, tmp_path, cli_run):
    assert_one_line_error(cli_run("run", "--plugin", "speech", *speech_args(tmp_path / "r1", extra=("speech.ndf=3",))),
                          "[speech] ndf=3")
    assert_one_line_error(cli_run("run", "--plugin", "speech", *speech_args(
        tmp_path / "r2", extra=("speech.segment_length=1024", "speech.stft_weight=1"))), "stft_weight > 0 needs")
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()
    (tmp_path / "empty.npy").write_bytes(b"")
    assert_one_line_error(cli_run("vocode", speech_run, tmp_path / "empty.npy", "-o", tmp_path / "o.wav"), "empty.npy")
    np.save(tmp_path / "mel.npy", np.full((80, 4), -5.0, np.float32))
    assert_one_line_error(cli_run("vocode", speech_run, tmp_path / "mel.npy", "-o", tmp_path), "is a directory")


def test_trunk_learns_from_each_modality_inside_the_training_loop(tmp_path):
    # FiLM[m] only sees modality m's loss; the trunk's zero-initialised output layer moves in step 1,
    # after which each modality's FiLM gets gradients only if that modality's loss reaches the trunk
    config = cfg.resolve(get_modality, plugins=["image", "speech"], out=tmp_path / "mt", steps=3, batch_size=2,
                         overrides=[*TINY, *SPEECH_TINY])
    trainer = Trainer(config, progress=False)
    film = trainer.accelerator.unwrap_model(trainer.G).trunk.film
    trainer.fit()
    for name in ("image", "speech"):
        assert film[name].abs().sum() > 0, name


def test_a_run_exported_before_the_generator_key_existed_loads_as_melgan(tmp_path):
    """Exports and runs that never wrote speech.generator were MelGANs: they load and resume as MelGANs
    although the default generator is now vocos."""
    from mmgan_speech.networks import MelGANHead

    run = tmp_path / "old"
    config = cfg.resolve(get_modality, plugins=["speech"], out=run, steps=2, batch_size=2,
                         overrides=[*TINY_CORE, *SPEECH_TINY, "train.checkpoint_every=2"])
    Trainer(config, progress=False).fit()
    meta_file = run / "export" / "speech.json"
    meta = json.loads(meta_file.read_text())
    del meta["config"]["generator"]
    meta_file.write_text(json.dumps(meta))
    toml = (run / "config.toml").read_text()
    (run / "config.toml").write_text(toml.replace('generator = "melgan"\n', ""))

    generator, loaded = load_generator(run, "speech")
    assert loaded.generator == "melgan" and isinstance(generator.heads["speech"], MelGANHead)
    resumed = cfg.resolve(get_modality, resume_dir=run, steps=3)
    assert resumed.modalities["speech"].generator == "melgan"
    Trainer(resumed, resume=True, progress=False).fit()
    assert read_metrics(run)[-1]["step"] == 3


def test_periodic_evaluation_and_eval_score_the_held_out_eval_data(tmp_path, caplog):
    """<modality>.eval_data: the held-out source periodic evaluation, select_by and `mmgan eval` use."""
    from mmgan.evaluation.scoring import context_for_run

    held_out = tmp_path / "held_out"
    held_out.mkdir()
    t = np.arange(22050) / 22050
    write_wav(held_out / "a.wav", 0.5 * np.sin(2 * np.pi * 180 * t), 22050)
    run = tmp_path / "run"
    config = cfg.resolve(get_modality, plugins=["speech"], out=run, steps=2, batch_size=2,
                         overrides=[*TINY_CORE, *SPEECH_TINY, "train.eval_every=2", "speech.eval_samples=1",
                                    f"speech.eval_data={held_out}"])
    Trainer(config, progress=False).fit()
    assert "speech/eval/mel_l1" in read_metrics(run)[-1]
    assert context_for_run(run).data == str(held_out)
    assert context_for_run(run, data="builtin:speech").data == "builtin:speech"

    (held_out / "a.wav").write_bytes(b"not a wav")  # the records name the source they scored
    caplog.set_level("WARNING", logger="mmgan")
    config = cfg.resolve(get_modality, resume_dir=run, steps=4)
    Trainer(config, resume=True, progress=False).fit()
    assert "speech evaluation skipped" in caplog.text and str(held_out) in caplog.text
    with pytest.raises(ConfigError, match=r"speech.eval_data: .*nowhere does not exist"):
        cfg.resolve(get_modality, plugins=["speech"], overrides=[f"speech.eval_data={tmp_path / 'nowhere'}"])


def test_a_run_from_another_trunk_stopped_before_its_first_checkpoint_starts_again_from_that_trunk(tmp_path):
    from mmgan.engine.rundir import RunDirectory

    source = tmp_path / "img"
    Trainer(cfg.resolve(get_modality, plugins=["image"], out=source, steps=2, batch_size=4, overrides=TINY),
            progress=False).fit()
    run = tmp_path / "sp"
    config = cfg.resolve(get_modality, plugins=["speech"], out=run, steps=2, batch_size=2,
                         overrides=[*TINY_CORE, *SPEECH_TINY, f"run.init_trunk={source}", "run.freeze_trunk=true"])
    RunDirectory(run).write_config(config)  # what a run stopped before its first checkpoint leaves
    again = Trainer(cfg.resolve(get_modality, resume_dir=run), resume=True, progress=False)
    assert again.step == 0
    trunk = again.accelerator.unwrap_model(again.G).trunk
    for key, value in load_generator(source, "image")[0].trunk.blocks.state_dict().items():
        assert torch.equal(trunk.blocks.state_dict()[key], value), key
    assert not any(p.requires_grad for p in trunk.blocks.parameters())
