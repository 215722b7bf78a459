"""The example third-party plugin (examples/mmgan-toy-plugin) and entry-point discovery.

Each toy module is registered on the process plugin manager in a fixture, as an installed plugin would
be, and trained for a few real steps through the Trainer: a new modality (ring2d), a wrapper around an
existing modality's discriminator (spectral) and a loss term added to every modality (r1). Discovery
is tested against a fake installed distribution (a ``*.dist-info`` directory on a temporary sys.path).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import click
import pluggy
import pytest
import torch
from click.testing import CliRunner
from conftest import assert_one_line_error
from PIL import Image
from torch import nn
from torch.nn.utils import parametrize

import mmgan
from mmgan import config as cfg
from mmgan import hookspecs
from mmgan.cli.commands import cli
from mmgan.contract import calls
from mmgan.contract import manager as mmgan_plugins
from mmgan.contract.manager import describe_plugins, get_modality, get_plugin_manager, load_entry_points
from mmgan.engine import Trainer
from mmgan.errors import ConfigError, DataError
from mmgan.losses import LossContext
from mmgan.testing import load_plugin, plugin_registered

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

TOY_ROOT = Path(__file__).resolve().parents[1] / "examples" / "mmgan-toy-plugin"
ENTRY_POINTS = {"ring2d": "mmgan_toy.ring:plugin", "spectral": "mmgan_toy.spectral", "r1": "mmgan_toy.r1"}


def toy_module(entry_point: str) -> ModuleType:
    """The example module behind an entry point, imported from the source tree (no install needed)."""
    if str(TOY_ROOT) not in sys.path:
        sys.path.insert(0, str(TOY_ROOT))
    return importlib.import_module(ENTRY_POINTS[entry_point].partition(":")[0])


@contextlib.contextmanager
def registered(entry_point: str) -> Iterator[ModuleType]:
    """Register a toy plugin on the process plugin manager for one test (mmgan.testing: the installed
    one if the example is pip-installed), yielding its module."""
    module = toy_module(entry_point)
    with plugin_registered(ENTRY_POINTS[entry_point], name=entry_point):
        yield module


@pytest.fixture
def ring() -> Iterator[ModuleType]:
    with registered("ring2d") as module:
        yield module


@pytest.fixture
def spectral() -> Iterator[ModuleType]:
    with registered("spectral") as module:
        yield module


@pytest.fixture
def r1() -> Iterator[ModuleType]:
    with registered("r1") as module:
        yield module


def tiny_run(out: Path, plugins: tuple[str, ...], steps: int = 3) -> Trainer:
    overrides = ["trunk.width=32", "trunk.depth=1", "train.log_every=1", "train.sample_every=2",
                 "train.checkpoint_every=3", "train.num_samples=16", "train.eval_every=0"]
    if "image" in plugins:
        overrides += ["image.image_size=32", "image.ngf=8", "image.ndf=8", "image.nz=16"]
    if "ring2d" in plugins:
        overrides += ["ring2d.hidden=32", "ring2d.num_points=256"]
    config = cfg.resolve(get_modality, plugins=plugins, out=out, steps=steps, batch_size=8, overrides=overrides)
    return Trainer(config, progress=False)


def read_metrics(run_dir: Path) -> list[dict]:
    timings = ("steps_per_s", "train_s", "train_cpu_s")  # measurements, not results
    return [{k: v for k, v in json.loads(line).items() if k not in timings}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# --- the package itself ----------------------------------------------------------------------------------


def test_package_declares_one_entry_point_per_module_and_each_fits_the_contract() -> None:
    project = tomllib.loads((TOY_ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["mmgan"] == ENTRY_POINTS
    assert any(dep.startswith("mmgan") for dep in project["dependencies"])
    for name in ENTRY_POINTS:
        # a fresh manager with the hookspecs validates each hookimpl's name and arguments against the contract
        pm = pluggy.PluginManager("mmgan")
        pm.add_hookspecs(hookspecs)
        toy_module(name)  # puts the example's source tree on sys.path
        pm.register(load_plugin(ENTRY_POINTS[name]), name=name)
        pm.check_pending()


# --- ring2d: a new modality ------------------------------------------------------------------------------


def test_ring_source_is_deterministic_and_on_the_ring(ring: ModuleType) -> None:
    config = ring.RingConfig(num_points=512)
    a, b = (calls.read_data("ring2d", "builtin:ring8", config, 3) for _ in range(2))
    other = ring.open_ring_source("builtin:ring8", config, seed=4)
    assert len(a) == 512 and a[0].shape == (2,) and a[0].dtype == torch.float32
    assert torch.equal(a.points, b.points) and not torch.equal(a.points, other.points)
    radii = a.points.norm(dim=1)
    assert ((radii - config.radius).abs() < 0.15).all()
    assert set(a.labels.tolist()) == set(range(8))
    with pytest.raises(DataError, match="builtin:ring8"):
        ring.open_ring_source("builtin:shapes", config, seed=0)
    # a path is not the toy's to read: another plugin may answer for it
    assert ring.plugin.read_data("points.csv", config, 0) is None


def test_ring2d_trains_writes_a_scatter_plot_and_generates(ring: ModuleType, tmp_path: Path) -> None:
    run_dir = tiny_run(tmp_path / "ring", ("ring2d",)).fit()
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(math.isfinite(r["ring2d/d/adv"]) and math.isfinite(r["ring2d/g/adv"]) for r in records)
    for step in (2, 3):
        with Image.open(run_dir / "samples" / "ring2d" / f"step_{step:06d}.png") as picture:
            assert picture.format == "PNG" and picture.size == (256, 256)
            colours = {colour for _, colour in picture.convert("RGB").getcolors(maxcolors=1 << 16)}
            assert (31, 119, 180) in colours  # generated points
            assert (170, 170, 170) in colours  # real points beside them
    out = tmp_path / "generated.png"
    result = CliRunner().invoke(cli, ["generate", str(run_dir), "-n", "32", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    with Image.open(out) as picture:
        assert picture.size == (256, 256)


def test_scatter_plot_survives_a_diverged_generator(ring: ModuleType, tmp_path: Path) -> None:
    points = torch.tensor([[float("nan"), 0.0], [1e9, -1e9], [0.0, 0.0]])
    path = ring.save_scatter(points, tmp_path / "s.png", extent=3.0)
    with Image.open(path) as picture:
        assert picture.getpixel((255, 255)) != (255, 255, 255)  # the far-off point is pinned to the corner
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        ring.save_scatter(torch.zeros(4, 3), tmp_path / "bad.png", extent=3.0)


# --- spectral: wrapping another plugin's discriminator -----------------------------------------------------


def test_spectral_norm_wraps_the_image_discriminator_only(ring: ModuleType, spectral: ModuleType,
                                                          tmp_path: Path) -> None:
    trainer = tiny_run(tmp_path / "sn", ("image", "ring2d"))
    trainer.fit()
    discs = trainer.accelerator.unwrap_model(trainer.D).discriminators
    convs = [m for m in discs["image"].modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4  # DCGAN at 32x32: three strided convolutions and the 4x4 logit layer
    for conv in convs:
        assert parametrize.is_parametrized(conv, "weight")
        assert type(conv.parametrizations.weight[0]).__name__ == "_SpectralNorm"
        assert isinstance(conv.parametrizations.weight.original, nn.Parameter)
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert abs(sigma.item() - 1) < 0.1  # W / sigma(W): the largest singular value is about 1
    assert not any(parametrize.is_parametrized(m) for m in discs["ring2d"].modules())
    records = read_metrics(trainer.run_dir)
    assert all(math.isfinite(v) for r in records for v in r.values())


def test_spectral_wrapper_passes_through_when_no_plugin_builds_one(spectral: ModuleType) -> None:
    pm = pluggy.PluginManager("mmgan")
    pm.add_hookspecs(hookspecs)
    pm.register(spectral, name="spectral")
    assert pm.hook.mmgan_build_discriminator(modality="image", config=None) is None


# --- r1: a loss term for every modality -------------------------------------------------------------------


def test_r1_term_is_half_gamma_times_the_squared_gradient_norm(r1: ModuleType) -> None:
    # D(x) = x . a has gradient a everywhere, so R1 = gamma / 2 * |a|^2 exactly
    a = torch.tensor([3.0, -4.0])
    real = torch.randn(5, 2)

    def context(gamma: float) -> LossContext:
        return LossContext("ring2d", None, 0, real, real.clone(), torch.zeros(5, 1), None, lambda x: x @ a,
                           plugin_configs={"r1": r1.R1Config(gamma=gamma)})

    (term,) = get_plugin_manager().hook.mmgan_discriminator_loss_terms(ctx=context(4.0))
    assert term["r1"].item() == pytest.approx(4 / 2 * 25)
    assert r1.mmgan_discriminator_loss_terms(ctx=context(0.0)) is None


def test_r1_gamma_is_a_config_section_set_recorded_and_validated(r1: ModuleType, tmp_path: Path,
                                                                 cli_run) -> None:
    config = cfg.resolve(get_modality, plugins=["image"], out=tmp_path / "run", overrides=["r1.gamma=10"])
    assert config.plugins["r1"].gamma == 10.0
    assert "[r1]\ngamma = 10.0" in cfg.to_toml(config)
    # a bad value is refused before the run directory exists, naming the key
    result = cli_run("run", "--plugin", "image", "--out", tmp_path / "bad", "--set", "r1.gamma=-1")
    assert_one_line_error(result, "[r1]", "gamma")
    assert not (tmp_path / "bad").exists()
    result = cli_run("run", "--plugin", "image", "--out", tmp_path / "bad", "--set", "r1.gama=1")
    assert_one_line_error(result, "r1.gama", "gamma")


def test_a_config_section_named_like_a_modality_names_both_plugins(ring: ModuleType) -> None:
    from mmgan.contract.manager import plugin_config_sections

    class Clash:
        @mmgan.hookimpl
        def mmgan_register_config(self, register):
            register("ring2d", r1_config_class())

    def r1_config_class():
        import mmgan_toy.r1

        return mmgan_toy.r1.R1Config

    with plugin_registered(Clash(), name="clash"), pytest.raises(ConfigError, match="'clash'.*ring2d.*'ring2d'"):
        plugin_config_sections()


def test_r1_is_logged_for_every_modality(ring: ModuleType, r1: ModuleType, tmp_path: Path) -> None:
    run_dir = tiny_run(tmp_path / "r1", ("image", "ring2d"), steps=2).fit()
    records = read_metrics(run_dir)
    assert len(records) == 2
    for record in records:
        for name in ("image/d/r1", "ring2d/d/r1"):
            assert math.isfinite(record[name]) and record[name] > 0, (name, record)
        assert not any(key.endswith("/g/r1") for key in record)  # a discriminator-step term only


def test_toy_info_command(r1: ModuleType) -> None:
    from mmgan_toy import __version__

    group = click.Group()
    get_plugin_manager().hook.mmgan_register_commands(cli=group)
    result = CliRunner().invoke(group, ["toy-info"], catch_exceptions=False)
    assert result.exit_code == 0
    assert f"mmgan-toy-plugin {__version__}" in result.output


# --- discovery of installed distributions -----------------------------------------------------------------

FAKE_PLUGIN = '''
import torch

import mmgan
from mmgan.contract.modality import Modality, ModalityConfig


@mmgan.hookimpl
def mmgan_register_modalities(register):
    register(Modality(name="toyfake", config_class=ModalityConfig,
                      make_input=lambda real, config, gen: torch.randn(real.shape[0], 4, generator=gen)))
'''


@pytest.fixture
def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``toyfake 0.3.0`` installed on a temporary sys.path entry: one good plugin and one that cannot import."""
    site = tmp_path / "site"
    info = site / "toyfake-0.3.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyfake\nVersion: 0.3.0\n")
    (info / "entry_points.txt").write_text("[mmgan]\ntoyfake = toyfake_plugin\ntoyfake_broken = toyfake_broken\n"
                                         "toyfake_badhook = toyfake_badhook\n")
    (site / "toyfake_plugin.py").write_text(FAKE_PLUGIN)
    (site / "toyfake_broken.py").write_text("raise ImportError('toyfake_broken needs libmissing')\n")
    # imports fine, but its hook takes an argument the contract does not have: registration refuses it
    (site / "toyfake_badhook.py").write_text(
        "import mmgan\n\n@mmgan.hookimpl\ndef mmgan_build_discriminator(modalty, config):\n    return None\n")
    monkeypatch.syspath_prepend(str(site))
    # load_entry_points records each plugin's distribution in a module-level table: restore it afterwards
    monkeypatch.setattr(mmgan_plugins, "_SOURCES", dict(mmgan_plugins._SOURCES))
    yield site
    for module in ("toyfake_plugin", "toyfake_broken", "toyfake_badhook"):
        sys.modules.pop(module, None)


def test_installed_distribution_is_discovered_and_a_broken_plugin_is_one_log_line(
        fake_distribution: Path, caplog: pytest.LogCaptureFixture) -> None:
    pm = pluggy.PluginManager("mmgan")
    pm.add_hookspecs(hookspecs)
    with caplog.at_level(logging.WARNING, logger="mmgan"):
        failures = load_entry_points(pm)
    assert failures == ["toyfake_badhook", "toyfake_broken"]
    assert pm.get_plugin("toyfake") is sys.modules["toyfake_plugin"]
    assert pm.get_plugin("image") is not None  # the built-in still loads beside the broken plugin
    warnings = [r.getMessage() for r in caplog.records if "toyfake_broken" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "libmissing" in warnings[0]
    warnings = [r.getMessage() for r in caplog.records if "toyfake_badhook" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "modalty" in warnings[0]
    infos = {info.name: info for info in describe_plugins(pm)}
    assert "toyfake_broken" not in infos
    fake = infos["toyfake"]
    assert (fake.version, fake.source) == ("0.3.0", "entry point of toyfake")
    assert fake.modalities == ["toyfake"] and fake.hooks == ["mmgan_register_modalities"]


@pytest.fixture
def fresh_process_manager() -> Iterator[None]:
    """The process-wide manager is cached: rebuild it under the test's environment, and after it."""
    get_plugin_manager.cache_clear()
    yield
    get_plugin_manager.cache_clear()


@pytest.mark.parametrize(("only", "expected"), [
    ("toyfake", {"mmgan.losses", "toyfake"}),
    ("image, toyfake", {"mmgan.losses", "image", "toyfake"}),
    ("", {"mmgan.losses"}),
])
def test_mmgan_plugins_env_limits_loading_and_reports_sources(
        fake_distribution: Path, fresh_process_manager: None, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, only: str, expected: set[str]) -> None:
    monkeypatch.setenv("MMGAN_PLUGINS", only)
    with caplog.at_level(logging.WARNING, logger="mmgan"):
        result = CliRunner().invoke(cli, ["plugins", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    infos = {info["name"]: info for info in json.loads(result.output)}
    assert set(infos) == expected
    assert not any("toyfake_broken" in r.getMessage() for r in caplog.records)  # not named, never imported
    if "toyfake" in expected:
        assert (infos["toyfake"]["version"], infos["toyfake"]["source"]) == ("0.3.0", "entry point of toyfake")
        table = CliRunner().invoke(cli, ["plugins"], catch_exceptions=False).output
        assert "toyfake 0.3.0  (entry point of toyfake)  modalities: toyfake" in table


def test_the_documented_testing_helpers_train_the_toy_whether_or_not_it_is_installed(ring, tmp_path) -> None:
    from mmgan.testing import tiny_run

    # the ``ring`` fixture registered it; registering the same name again is what an installed package
    # meets: plugin_registered must hand back the plugin already there instead of failing
    with plugin_registered(ENTRY_POINTS["ring2d"], name="ring2d") as plugin:
        assert plugin is get_plugin_manager().get_plugin("ring2d")
        run_dir = tiny_run(tmp_path / "run", plugins=["ring2d"], steps=2, overrides=["ring2d.hidden=32"])
    assert (run_dir / "samples" / "ring2d" / "step_000002.png").is_file()
    assert get_plugin_manager().get_plugin("ring2d") is not None  # left registered: it was not ours


def test_two_plugins_of_one_modality_disable_only_that_modality(caplog: pytest.LogCaptureFixture) -> None:
    # faults row 71: two plugins declaring one modality made every command fail, other modalities' included
    from mmgan.api import Modality, ModalityConfig
    from mmgan.contract.manager import get_modality, modalities
    from mmgan.errors import PluginError

    class Twin:
        def __init__(self) -> None:
            self.modality = Modality(name="twin", config_class=ModalityConfig, make_input=lambda r, c, g: r)

        @mmgan.hookimpl
        def mmgan_register_modalities(self, register):
            register(self.modality)

    with plugin_registered(Twin(), name="twin_a"), plugin_registered(Twin(), name="twin_b"), \
            caplog.at_level(logging.WARNING, logger="mmgan"):
        assert "twin" not in modalities() and get_modality("image").name == "image"  # the others work
        with pytest.raises(PluginError, match="'twin_a' and 'twin_b'"):
            get_modality("twin")
    assert any("'twin_a' and 'twin_b'" in r.getMessage() for r in caplog.records)


def test_new_plugin_refuses_the_name_of_an_installed_plugin(cli_run, tmp_path) -> None:
    # faults row 68: `new-plugin image` wrote a package that, installed, shadowed the built-in image plugin
    from conftest import assert_one_line_error

    assert_one_line_error(cli_run("new-plugin", "image", "--modality", "-o", tmp_path), "'image'", "taken")
    assert not (tmp_path / "mmgan-image").exists()
