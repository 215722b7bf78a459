"""mmgan new-plugin writes packages that install, pass their own test and train from the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_one_line_error


def _run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.slow
def test_new_plugins_install_pass_their_tests_and_train(tmp_path, cli_run):
    for args in (["wave", "--modality"], ["pics", "--modality", "--shape", "image"], ["moments"]):
        result = cli_run("new-plugin", *args, "-o", tmp_path)
        assert result.exit_code == 0, result.output
    # a temporary environment: this one, plus the packages installed (not editable) into an overlay
    # directory on PYTHONPATH; nothing is downloaded and this environment is left as it was
    overlay = tmp_path / "overlay"
    env = {**os.environ, "PYTHONPATH": str(overlay)}
    _run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(overlay), *(str(tmp_path / f"mmgan-{name}") for name in ("wave", "pics", "moments")),
         cwd=tmp_path, env=env)
    listed = _run(sys.executable, "-m", "mmgan", "plugins", cwd=tmp_path, env=env).stdout
    assert "wave 0.1.0  (entry point of mmgan-wave)  modalities: wave" in listed
    assert "pics 0.1.0  (entry point of mmgan-pics)  modalities: pics" in listed
    assert "moments 0.1.0  (entry point of mmgan-moments)" in listed
    _run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "mmgan-wave/tests", "mmgan-pics/tests",
         "mmgan-moments/tests", cwd=tmp_path, env=env)
    _run(sys.executable, "-m", "mmgan", "run", "--plugin", "wave", "--steps", "2", "--out", "run", "--no-progress",
         "--set", "trunk.width=32", "--set", "moments.weight=0.5", cwd=tmp_path, env=env)
    last = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1]
    assert '"wave/g/moments"' in last
    assert "[moments]\nweight = 0.5" in (tmp_path / "run" / "config.toml").read_text()
    # the image skeleton trains from the command line and writes its samples as a PNG grid
    _run(sys.executable, "-m", "mmgan", "run", "--plugin", "pics", "--steps", "2", "--out", "run-pics",
         "--no-progress", "--set", "trunk.width=32", cwd=tmp_path, env=env)
    assert '"pics/g/adv"' in (tmp_path / "run-pics" / "metrics.jsonl").read_text().splitlines()[-1]
    grid = tmp_path / "run-pics" / "samples" / "pics" / "step_000002.png"
    assert grid.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # the generated code is as clean as ours
    _run(sys.executable, "-m", "ruff", "check", "--no-cache", "mmgan-wave/mmgan_wave", "mmgan-wave/tests",
         "mmgan-pics/mmgan_pics", "mmgan-pics/tests", "mmgan-moments/mmgan_moments", "mmgan-moments/tests",
         cwd=tmp_path, env=env)


def test_the_sequence_shape_is_the_default_modality_skeleton(cli_run, tmp_path):
    for parent, args in ((tmp_path / "plain", ()), (tmp_path / "shaped", ("--shape", "sequence"))):
        result = cli_run("new-plugin", "wave", "--modality", *args, "-o", parent)
        assert result.exit_code == 0, result.output
    plain, shaped = tmp_path / "plain" / "mmgan-wave", tmp_path / "shaped" / "mmgan-wave"
    files = sorted(path.relative_to(plain) for path in plain.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(shaped) for path in shaped.rglob("*") if path.is_file())
    assert all((plain / file).read_text() == (shaped / file).read_text() for file in files)
    assert "class SignalPlugin(ModalityPlugin)" in (plain / "mmgan_wave" / "plugin.py").read_text()


def test_the_image_shape_writes_an_image_modality(cli_run, tmp_path):
    result = cli_run("new-plugin", "pics", "--modality", "--shape", "image", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    root = tmp_path / "mmgan-pics"
    source = (root / "mmgan_pics" / "plugin.py").read_text()
    assert 'data: str = engine_default("builtin:pics")' in source
    assert "\nimport torch" not in source  # torch is imported inside the methods: the CLI starts light
    assert 'pics = "mmgan_pics.plugin:plugin"' in (root / "pyproject.toml").read_text()
    assert "--shape image" in (root / "README.md").read_text()
    assert (root / "tests" / "test_mmgan_pics.py").is_file()


def test_shape_without_modality_is_one_line(cli_run, tmp_path):
    assert_one_line_error(cli_run("new-plugin", "pics", "--shape", "image", "-o", tmp_path), "--shape", "--modality")
    assert not (tmp_path / "mmgan-pics").exists()


def test_an_unknown_shape_is_one_line(cli_run, tmp_path):
    assert_one_line_error(cli_run("new-plugin", "pics", "--modality", "--shape", "audio", "-o", tmp_path),
                          "--shape", "audio")


@pytest.mark.parametrize("name", ["Wave", "2d", "my-plugin", ""])
def test_a_bad_plugin_name_is_one_line(cli_run, tmp_path, name):
    assert_one_line_error(cli_run("new-plugin", name, "-o", tmp_path), "plugin name")


def test_an_existing_package_directory_is_not_overwritten(cli_run, tmp_path):
    (tmp_path / "mmgan-wave").mkdir()
    (tmp_path / "mmgan-wave" / "mine.py").write_text("keep me\n")
    assert_one_line_error(cli_run("new-plugin", "wave", "-o", tmp_path), "mmgan-wave", "not empty")
    assert (tmp_path / "mmgan-wave" / "mine.py").read_text() == "keep me\n"
