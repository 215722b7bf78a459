import logging
import re

import pytest

from mmgan import config as cfg
from mmgan.contract.manager import get_modality
from mmgan.errors import ConfigError


def resolve(**kwargs):
    return cfg.resolve(get_modality, **{"plugins": ["image"], "out": "runs/x", **kwargs})


def test_defaults_come_from_dataclasses_and_the_modality():
    config = resolve()
    assert config.train.lr_g == 2e-4 and (config.train.beta1, config.train.beta2) == (0.5, 0.999)
    assert config.modalities["image"].data == "builtin:shapes"
    assert config.modalities["image"].nz == 100


def test_toml_round_trip_reproduces_the_config(tmp_path):
    config = resolve(overrides=["image.image_size=32", "train.channels_last=true", "train.loss=hinge"], seed=7)
    path = tmp_path / "config.toml"
    path.write_text(cfg.to_toml(config))
    again = cfg.resolve(get_modality, config_file=path)
    assert again.to_dict() == config.to_dict()


def test_precedence_file_then_flags_then_set(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nsteps = 50\nbatch_size = 4\n[image]\nimage_size = 32\n")
    config = resolve(config_file=path, steps=70, overrides=["train.steps=90"])
    assert (config.train.steps, config.train.batch_size, config.modalities["image"].image_size) == (90, 4, 32)


def test_set_coerces_by_field_type():
    config = resolve(overrides=["train.lr_d=1e-3", "train.channels_last=yes", "image.data=some/dir", "run.seed=3"])
    assert config.train.lr_d == 1e-3 and config.train.channels_last is True
    assert config.modalities["image"].data == "some/dir" and config.run.seed == 3


@pytest.mark.parametrize(("override", "fragment"), [
    ("train.stepz=3", "unknown config key 'train.stepz'; valid keys in [train]: batch_size"),
    ("video.fps=3", "unknown config section 'video'; valid sections: run, train, trunk, image"),
    ("train.steps=many", "train.steps: expected an integer, got 'many'"),
    ("train.channels_last=maybe", "expected true or false"),
    ("steps=3", "must look like section.key"),
    ("train.steps", "expected section.key=value"),
    ("train.steps=0", "train.steps must be positive, got 0"),
    ("train.batch_size=-2", "train.batch_size must be positive, got -2"),
    ("image.image_size=48", "image_size must be 32 or 64, got 48"),
    ("train.mixed_precision=fp8", "mixed_precision must be auto, no, bf16 or fp16"),
])
def test_bad_values_name_the_key(override, fragment):
    with pytest.raises(ConfigError) as err:
        resolve(overrides=[override])
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[train\nsteps = ")
    with pytest.raises(ConfigError, match="broken.toml is not valid TOML"):
        resolve(config_file=path)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve(config_file=tmp_path / "missing.toml")
    path.write_text("[train]\nsteps = 'ten'\n")
    with pytest.raises(ConfigError, match="broken.toml: train.steps: expected an integer"):
        resolve(config_file=path)


def test_data_flag_for_one_and_several_modalities():
    assert resolve(data=["some/folder"]).modalities["image"].data == "some/folder"
    assert resolve(data=["image=other"]).modalities["image"].data == "other"


def test_no_modality_is_an_error():
    with pytest.raises(ConfigError, match="pass --plugin"):
        cfg.resolve(get_modality, plugins=[])


def test_modalities_suggesting_different_train_defaults(caplog):
    caplog.set_level(logging.INFO, logger="mmgan")
    from mmgan.contract.modality import Modality, ModalityConfig

    def make(name, **defaults):
        return Modality(name=name, config_class=ModalityConfig, make_input=lambda r, c, g: r, train_defaults=defaults)

    config = cfg.default_config([make("a", steps=100, batch_size=64, lr_g=1e-3, sample_every=10),
                                 make("b", steps=300, batch_size=16, beta1=0.8, sample_every=20)])
    # in a run of several modalities each keeps its own steps, batch and optimiser in its section ...
    a, b = config.modalities["a"], config.modalities["b"]
    assert (a.steps, a.batch_size, a.lr_g, a.beta1) == (100, 64, 1e-3, -1.0)
    assert (b.steps, b.batch_size, b.lr_g, b.beta1) == (300, 16, 0.0, 0.8)
    assert config.train.steps == 300  # the loop runs until the longest is done
    assert (cfg.own_value(config, "a", "lr_g"), cfg.own_value(config, "b", "lr_g")) == (1e-3, config.train.lr_g)
    assert "batch_size" not in caplog.text
    # ... while run-wide settings still go to [train], the first modality's where they differ (logged)
    assert config.train.sample_every == 10 and "train.sample_every" in caplog.text
    # a run of one modality keeps its suggestions in [train], as it always did
    alone = cfg.default_config([make("a", steps=100, batch_size=64)])
    assert (alone.train.steps, alone.train.batch_size, alone.modalities["a"].steps) == (100, 64, 0)


def test_modalities_suggest_trunk_settings_and_the_deepest_trunk_wins(caplog):
    """Modality.trunk_defaults: a speech run builds its vocoder's deeper trunk, an image run keeps the
    core's, a run of both the deeper one (each goes through its own trunk_depth), and --set wins."""
    caplog.set_level(logging.INFO, logger="mmgan")
    from mmgan.contract.modality import Modality, ModalityConfig
    from mmgan.trunk import TrunkConfig

    def make(name, **trunk):
        return Modality(name=name, config_class=ModalityConfig, make_input=lambda r, c, g: r, trunk_defaults=trunk)

    assert cfg.default_config([make("a")]).trunk.depth == TrunkConfig().depth
    assert cfg.default_config([make("a", depth=3), make("b", depth=8, kernel_size=5)]).trunk.depth == 8
    config = cfg.default_config([make("a", depth=3, kernel_size=3), make("b", depth=8, kernel_size=5)])
    assert (config.trunk.depth, config.trunk.kernel_size) == (8, 3)  # deepest depth, first modality's kernel
    assert "trunk.kernel_size" in caplog.text and "trunk.depth" in caplog.text
    speech = get_modality("speech")
    assert cfg.resolve(get_modality, plugins=["speech"]).trunk.depth == speech.trunk_defaults["depth"]
    assert cfg.resolve(get_modality, plugins=["image", "speech"]).trunk.depth == speech.trunk_defaults["depth"]
    assert cfg.resolve(get_modality, plugins=["image"]).trunk.depth == TrunkConfig().depth
    assert cfg.resolve(get_modality, plugins=["speech"], overrides=["trunk.depth=3"]).trunk.depth == 3
    with pytest.raises(ConfigError, match="trunk.nope"):
        cfg.default_config([make("a", nope=1)])


def test_a_section_written_before_a_key_existed_keeps_its_old_meaning(tmp_path):
    """Modality.legacy_values: a speech run saved before speech.generator existed was a MelGAN, and
    resumes as one although the default is now vocos."""
    run = tmp_path / "old"
    config = cfg.resolve(get_modality, plugins=["speech"], out=run, overrides=["speech.generator=melgan"])
    run.mkdir()
    text = cfg.to_toml(config)
    assert 'generator = "melgan"' in text
    (run / "config.toml").write_text(text.replace('generator = "melgan"\n', ""))
    assert cfg.resolve(get_modality, resume_dir=run).modalities["speech"].generator == "melgan"
    assert cfg.resolve(get_modality, plugins=["speech"]).modalities["speech"].generator == "vocos"


def test_the_example_speech_recipes_resolve_and_the_long_one_is_the_default_run_longer():
    from pathlib import Path

    examples = Path(__file__).resolve().parent.parent / "examples" / "configs"
    default = cfg.resolve(get_modality, plugins=["speech"], out="runs/x").to_dict()
    long = cfg.resolve(get_modality, config_file=examples / "speech-vocos-2h.toml", out="runs/x").to_dict()
    differences = {(section, key) for section in default for key in default[section]
                   if default[section][key] != long[section][key]}
    assert differences <= {("train", "steps"), ("train", "eval_every")}
    assert long["train"]["steps"] > default["train"]["steps"]
    priors = cfg.resolve(get_modality, config_file=examples / "speech-vocos-priors.toml", out="runs/x").to_dict()
    differences = {(section, key) for section in default for key in default[section]
                   if default[section][key] != priors[section][key]}
    assert differences == set()  # the default written out, the priors spelled out
    melgan = cfg.resolve(get_modality, config_file=examples / "speech-melgan.toml", out="runs/x")
    assert (melgan.modalities["speech"].generator, melgan.trunk.depth, melgan.train.lr_g) == ("melgan", 2, 1e-4)


@pytest.mark.parametrize(("setting", "named"), [
    ("train.num_samples=100000000", "train.num_samples must be between 1 and 1024"),
    ("train.ema_bn_batches=100000000", "train.ema_bn_batches must be between 0 and 1000"),
    ("train.num_workers=1000", "train.num_workers must be between 0 and 256"),
    ("image.trunk_depth=99", "image.trunk_depth must be -1 (all blocks) or between 0 and trunk.depth=2"),
])
def test_sizes_that_exhaust_memory_or_time_have_ranges(setting, named):
    # faults rows 92 (a 40 GB allocation, a checkpoint that ignored SIGTERM) and 78 (99 recorded)
    from mmgan.contract.manager import get_modality
    from mmgan.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(named)):
        cfg.resolve(get_modality, plugins=["image"], overrides=["trunk.depth=2", setting])
