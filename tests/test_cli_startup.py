"""The CLI starts without torch: ``mmgan --help``, ``mmgan plugins`` and the help of each command import
neither torch nor scipy (seconds of import), although every plugin is loaded to build the CLI; the
commands that compute import them when they run.

Each check runs in a fresh interpreter (this test process has long imported torch), with this process's
module search path and the built-in plugins only (``MMGAN_PLUGINS``), so a third-party plugin installed
here cannot decide the result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# builds the CLI as `mmgan` does, runs one command line without exiting, and reports on stderr which
# heavy modules were imported (stdout is the command's own output)
SCRIPT = """
import json, sys
from mmgan.cli.commands import build_cli

code = build_cli().main(sys.argv[1:], prog_name="mmgan", standalone_mode=False)
heavy = sorted(name for name in ("torch", "scipy") if name in sys.modules)
print(json.dumps({"code": code or 0, "heavy": heavy}), file=sys.stderr)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "MMGAN_PLUGINS": "image,speech",
            "COLUMNS": "100"}


def _run(*args: str) -> tuple[str, dict]:
    """``args`` run by the CLI in a new interpreter: its stdout and ``{"code", "heavy"}``."""
    result = subprocess.run([sys.executable, "-c", SCRIPT, *args], cwd=ROOT, env=_env(), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout, json.loads(result.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["plugins"], ["plugins", "--json"], ["run", "--help"],
                                  ["eval", "--help"], ["vocode", "--help"]], ids=" ".join)
def test_help_and_plugins_import_neither_torch_nor_scipy(args: list[str]) -> None:
    _, report = _run(*args)
    assert report == {"code": 0, "heavy": []}


def test_the_light_cli_still_has_every_plugin_command_and_option() -> None:
    out, _ = _run("--help")
    assert "vocode" in out  # a command the speech plugin adds
    out, _ = _run("eval", "--help")
    assert "--inception-weights" in out  # an option the image plugin adds
    out, _ = _run("plugins", "--json")
    plugins = {info["name"]: info for info in json.loads(out)}
    assert plugins["image"]["modalities"] == ["image"] and plugins["speech"]["modalities"] == ["speech"]
    assert "build_generator" in plugins["speech"]["methods"]
    out, _ = _run("--version")
    assert out.startswith("mmgan, version ")


@pytest.mark.slow
def test_a_command_that_needs_torch_still_gives_its_one_line_error(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "mmgan", "generate", str(tmp_path / "missing"), "-o",
                             str(tmp_path / "grid.png")], cwd=ROOT, env=_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "missing" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
