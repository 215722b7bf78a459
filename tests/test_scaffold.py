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
    for args in (["wave", "--modality"], ["moments"]):
        result = cli_run("new-plugin", *args, "-o", tmp_path)
        assert result.exit_code == 0, result.output
    # a temporary environment: this one, plus the packages installed (not editable) into an overlay
    # directory on PYTHONPATH; nothing is downloaded and this environment is left as it was
    overlay = tmp_path / "overlay"
    env = {**os.environ, "PYTHONPATH": str(overlay)}
    _run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(overlay), str(tmp_path / "mmgan-wave"), str(tmp_path / "mmgan-moments"), cwd=tmp_path, env=env)
    listed = _run(sys.executable, "-m", "mmgan", "plugins", cwd=tmp_path, env=env).stdout
    assert "wave 0.1.0  (entry point of mmgan-wave)  modalities: wave" in listed
    assert "moments 0.1.0  (entry point of mmgan-moments)" in listed
    _run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "mmgan-wave/tests", "mmgan-moments/tests",
         cwd=tmp_path, env=env)
    _run(sys.executable, "-m", "mmgan", "run", "--plugin", "wave", "--steps", "2", "--out", "run", "--no-progress",
         "--set", "trunk.width=32", "--set", "moments.weight=0.5", cwd=tmp_path, env=env)
    last = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1]
    assert '"wave/g/moments"' in last
    assert "[moments]\nweight = 0.5" in (tmp_path / "run" / "config.toml").read_text()
    # the generated code is as clean as ours
    _run(sys.executable, "-m", "ruff", "check", "--no-cache", "mmgan-wave/mmgan_wave", "mmgan-wave/tests",
         "mmgan-moments/mmgan_moments", "mmgan-moments/tests", cwd=tmp_path, env=env)


@pytest.mark.parametrize("name", ["Wave", "2d", "my-plugin", ""])
def test_a_bad_plugin_name_is_one_line(cli_run, tmp_path, name):
    assert_one_line_error(cli_run("new-plugin", name, "-o", tmp_path), "plugin name")


def test_an_existing_package_directory_is_not_overwritten(cli_run, tmp_path):
    (tmp_path / "mmgan-wave").mkdir()
    (tmp_path / "mmgan-wave" / "mine.py").write_text("keep me\n")
    assert_one_line_error(cli_run("new-plugin", "wave", "-o", tmp_path), "mmgan-wave", "not empty")
    assert (tmp_path / "mmgan-wave" / "mine.py").read_text() == "keep me\n"
