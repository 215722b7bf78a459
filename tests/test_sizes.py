"""Sizes are checked before anything is allocated: each size key in its documented range (config and
export JSON alike), and the memory the networks will need against the memory there is."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from conftest import TINY, assert_one_line_error, tiny_args

from mmgan import config as cfg
from mmgan.config import sizes
from mmgan.contract.manager import get_modality, get_plugin_manager
from mmgan.engine import Trainer
from mmgan.engine.build import training_parts
from mmgan.errors import ConfigError
from mmgan_image.networks import DCGANDiscriminator, DCGANHead


@pytest.fixture(scope="module")
def tiny_run_dir(tmp_path_factory) -> Path:
    """One tiny trained image run whose export the tests below copy and edit."""
    from click.testing import CliRunner

    from mmgan.cli.commands import build_cli

    run_dir = tmp_path_factory.mktemp("sizes") / "run"
    result = CliRunner().invoke(build_cli(), ["run", "--plugin", "image", *tiny_args(run_dir, steps=1)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return run_dir


def edited_export(run_dir: Path, tmp_path: Path, section: str, **values: int) -> Path:
    """A copy of ``run_dir``'s export with ``values`` written into its JSON's ``section``."""
    copy = tmp_path / "edited"
    (copy / "export").mkdir(parents=True)
    for name in ("image.safetensors", "image.json"):
        (copy / "export" / name).write_bytes((run_dir / "export" / name).read_bytes())
    meta = json.loads((copy / "export" / "image.json").read_text())
    meta[section].update(values)
    (copy / "export" / "image.json").write_text(json.dumps(meta))
    return copy


@pytest.fixture
def built_devices(monkeypatch) -> list[str]:
    """The default device in effect each time an image head or discriminator is built ("meta": counted
    only; "cpu": allocated)."""
    seen: list[str] = []
    for cls in (DCGANHead, DCGANDiscriminator):
        def init(self, *args, original=cls.__init__, **kwargs):
            seen.append(torch.empty(0).device.type)
            original(self, *args, **kwargs)
        monkeypatch.setattr(cls, "__init__", init)
    return seen


def small_memory(monkeypatch, tmp_path: Path, kilobytes: int) -> None:
    """Make the host report ``kilobytes`` of MemAvailable and no container limit."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal:       24684084 kB\nMemAvailable:   {kilobytes} kB\n")
    monkeypatch.setattr(sizes, "MEMINFO", meminfo)
    monkeypatch.setattr(sizes, "CGROUP_LIMITS", ())


@pytest.mark.parametrize("setting, message", [
    ("image.ngf=100000", "[image] ngf must be between 1 and 4096, got 100000"),
    ("image.ndf=0", "[image] ndf must be between 1 and 4096, got 0"),
    ("image.nz=20000", "[image] nz must be between 1 and 16384, got 20000"),
    ("speech.ngf=5000", "[speech] ngf must be between 1 and 1024, got 5000"),
    ("speech.disc_channels=100000", "[speech] disc_channels must be between 1 and 16384, got 100000"),
    ("speech.segment_length=4194304", "[speech] segment_length must be a multiple of 256 between 1024 and 1048576"),
])
def test_modality_sizes_out_of_range_are_one_line_errors_naming_the_key(setting, message, tmp_path):
    plugin = setting.split(".")[0]
    with pytest.raises(ConfigError) as caught:
        cfg.resolve(get_modality, plugins=(plugin,), out=tmp_path / "run", overrides=[setting])
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("setting, message", [
    ("trunk.width=10000000", "trunk.width must be between 1 and 8192, got 10000000"),
    ("trunk.depth=5000", "trunk.depth must be between 0 and 1024, got 5000"),
    ("trunk.expansion=1000", "trunk.expansion must be between 1 and 64, got 1000"),
    ("trunk.kernel_size=4095", "trunk.kernel_size must be between 1 and 1023, got 4095"),
])
def test_trunk_sizes_out_of_range_refuse_the_run_before_building(setting, message, cli_run, tmp_path, built_devices):
    run_dir = tmp_path / "run"
    assert_one_line_error(cli_run("run", "--plugin", "image", *tiny_args(run_dir, extra=(setting,))), message)
    assert not run_dir.exists()
    assert built_devices == []


def test_a_config_file_with_an_absurd_trunk_width_is_refused(cli_run, tmp_path):
    config = tmp_path / "big.toml"
    config.write_text('[run]\nmodalities = ["image"]\n\n[trunk]\nwidth = 100000\n')
    assert_one_line_error(cli_run("run", "--config", config, "--out", tmp_path / "run", "--no-progress"),
                          "trunk.width must be between 1 and 8192, got 100000")


@pytest.mark.parametrize("section, values, message", [
    ("config", {"ngf": 100000}, "image.json: ngf must be between 1 and 4096, got 100000"),
    ("trunk", {"width": 10_000_000}, "image.json: trunk.width must be between 1 and 8192, got 10000000"),
    # in range, but not the weights' sizes: found on the meta device
    ("config", {"ngf": 4096}, "do not fit the 'image' generator: heads.image.net.0.weight is (32, 16, 4, 4)"),
])
def test_generate_refuses_an_export_whose_json_was_edited_without_building_it(
        section, values, message, tiny_run_dir, cli_run, tmp_path, built_devices):
    run_dir = edited_export(tiny_run_dir, tmp_path, section, **values)
    assert_one_line_error(cli_run("generate", run_dir, "-o", tmp_path / "g.png"), message)
    assert "cpu" not in built_devices
    assert not (tmp_path / "g.png").exists()


def test_generate_refuses_a_generator_larger_than_the_free_memory(tiny_run_dir, cli_run, tmp_path, monkeypatch,
                                                                  built_devices):
    small_memory(monkeypatch, tmp_path, kilobytes=10)
    assert_one_line_error(cli_run("generate", tiny_run_dir, "-o", tmp_path / "g.png"),
                          "the generator of", "more than the 10 kB available (MemAvailable)", "image.ngf=8",
                          "trunk.width=32")
    assert built_devices == ["meta"]


def test_training_refuses_networks_larger_than_the_free_memory_before_allocating(cli_run, tmp_path, monkeypatch,
                                                                                built_devices):
    small_memory(monkeypatch, tmp_path, kilobytes=500)
    run_dir = tmp_path / "run"
    assert_one_line_error(cli_run("run", "--plugin", "image", *tiny_args(run_dir)),
                          "training (weights, gradients, Adam and its update, the EMA generator) needs about 741 kB",
                          "more than the 512 kB available (MemAvailable)", "image 560 kB (image.image_size=32",
                          "trunk 88 kB (trunk.width=32")
    assert built_devices == ["meta", "meta"]
    assert not run_dir.exists()


def test_the_training_estimate_is_what_one_step_of_training_holds(tiny_config, tmp_path):
    """Weights, gradients and Adam's moments of G and D, plus the EMA generator, counted on the real
    tensors after a step; the estimate (on the meta device) misses only Adam's step counters. Beside them,
    the update's temporary: the larger of G's and D's trainable parameters."""
    config = tiny_config(tmp_path / "run", steps=1, extra=("trunk.depth=2", "image.trunk_depth=1"))
    *parts, update = training_parts(get_plugin_manager(), config)
    estimate = sum(part.need for part in parts)
    trainer = Trainer(config, progress=False)
    trainer.fit()

    def nbytes(tensors) -> int:
        return sum(t.numel() * t.element_size() for t in tensors)

    held = nbytes(trainer.ema.parameters()) + nbytes(trainer.ema.buffers())
    for net, opt in ((trainer.accelerator.unwrap_model(trainer.G), trainer.opt_g), (trainer.D_module, trainer.opt_d)):
        held += nbytes(net.parameters()) + nbytes(net.buffers())
        held += nbytes(p.grad for p in net.parameters() if p.grad is not None)
        held += nbytes(v for state in opt.state.values() for v in state.values() if torch.is_tensor(v))
    assert estimate == pytest.approx(held, rel=0.01)
    assert update.name == "the optimizer's update"
    assert update.need == max(nbytes(p for p in net.parameters() if p.requires_grad)
                              for net in (trainer.accelerator.unwrap_model(trainer.G), trainer.D_module))
    # the unused second trunk block is frozen: no gradient or Adam state counted for it
    assert estimate < sum(part.need for part in training_parts(get_plugin_manager(), tiny_config(
        tmp_path / "other", extra=("trunk.depth=2", "image.trunk_depth=-1"))))


def test_the_estimate_of_a_known_network_and_the_refusal(monkeypatch):
    linear = sizes.build_on_meta(lambda: torch.nn.Linear(1000, 1000))
    assert linear.weight.is_meta
    size = sizes.footprint(linear)
    assert size == sizes.Footprint(trainable=1001 * 1000 * 4, fixed=0)
    assert size.training(ema=True) == 5 * 4_004_000 and size.inference == 4_004_000
    part = sizes.Part("linear", "x.width=1000", size.training())
    assert sizes.check_memory([part], torch.device("meta"), "training") == 16_016_000  # unknown memory: no check
    monkeypatch.setattr(sizes, "host_memory", lambda: (1_000_000, "MemAvailable"))
    with pytest.raises(ConfigError, match=r"^training needs about 16 MB on cpu, more than the 1 MB available "
                                          r"\(MemAvailable\): linear 16 MB \(x.width=1000\); lower those sizes$"):
        sizes.check_memory([part], torch.device("cpu"), "training")


def test_host_memory_reads_meminfo_and_a_container_limit(tmp_path, monkeypatch):
    small_memory(monkeypatch, tmp_path, kilobytes=2_000_000)
    assert sizes.host_memory() == (2_048_000_000, "MemAvailable")
    limit = tmp_path / "memory.max"
    limit.write_text("1000000000\n")
    monkeypatch.setattr(sizes, "CGROUP_LIMITS", (limit,))
    assert sizes.host_memory() == (1_000_000_000, f"the memory limit of {limit}")
    limit.write_text("max\n")
    assert sizes.host_memory() == (2_048_000_000, "MemAvailable")
    monkeypatch.setattr(sizes, "MEMINFO", tmp_path / "missing")
    monkeypatch.setattr(sizes, "CGROUP_LIMITS", ())
    assert sizes.host_memory() is None


def test_a_network_that_cannot_be_built_on_meta_skips_the_estimate_and_still_trains(tmp_path, monkeypatch, caplog):
    original = DCGANDiscriminator.__init__

    def init(self, *args, **kwargs):
        if torch.empty(0).is_meta:
            raise NotImplementedError("this network computes while it is built")
        original(self, *args, **kwargs)

    monkeypatch.setattr(DCGANDiscriminator, "__init__", init)
    config = cfg.resolve(get_modality, plugins=("image",), out=tmp_path / "run", steps=1, batch_size=8,
                         overrides=TINY)
    with caplog.at_level(logging.DEBUG, logger="mmgan"):
        assert training_parts(get_plugin_manager(), config) is None
        run_dir = Trainer(config, progress=False).fit()
    assert "cannot be built on the meta device (" in caplog.text
    assert "NotImplementedError: this network computes while it is built" in caplog.text
    assert (run_dir / "export" / "image.safetensors").is_file()
