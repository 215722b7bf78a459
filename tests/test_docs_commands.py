"""The README's command lines run as written, in a fresh directory: short ones fully, training ones with
``--steps 2`` at tiny sizes (the settings are appended, the command's own are kept); a short skip list says
why the rest cannot run here. A command line changed in the README is a command this test runs."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
TINY = ["image.image_size=32", "image.ngf=8", "image.ndf=8", "image.nz=16", "speech.segment_length=2048",
        "speech.mpd_channels=2", "speech.mrd_channels=2", "speech.adversarial_start=0", "trunk.width=32",
        "trunk.depth=1", "train.num_samples=16", "train.eval_every=0", "train.mixed_precision=no"]
# commands that cannot run in a test, and why
SKIP = {
    "bash bin/quickstart": "sets up a .venv and trains the default run; tests/test_cli.py runs it with --steps 2",
    "bash .ci/run": "is CI itself",
    "pip install": "installs packages",
    "python -m pytest": "is this suite",
    "accelerate launch --multi_gpu": "needs several GPUs (tests/test_distributed.py runs the CPU form)",
    "mmgan check-plugin mymod": "needs the package new-plugin wrote installed (tests/test_scaffold.py installs one)",
}


def readme_commands() -> list[str]:
    """Every command line in the README's code blocks (comments dropped)."""
    lines, inside = [], False
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = not inside
            continue
        command = line.split("  #")[0].strip()
        if inside and re.match(r"^(mmgan|accelerate|python|bash|pip) ", command):
            lines.append(command)
    return lines


def runnable(command: str) -> str:
    """``command`` as this test runs it: tiny sizes and 2 steps for a training run, a small pack and eval."""
    line = command.replace("runs/<name>", "RUN")
    words = shlex.split(line)
    extra: list[str] = []
    at = words.index("mmgan") if "mmgan" in words else -1  # `mmgan ...` or `accelerate launch -m mmgan ...`
    if at >= 0 and words[at + 1:at + 2] == ["run"]:
        line = re.sub(r" --steps \d+", "", line)
        extra = ["--steps", "2", "--batch-size", "4"]
        if "--resume" not in words and "--config" not in words:
            modalities = {words[i + 1] for i, w in enumerate(words) if w == "--plugin"}
            extra += [a for s in TINY if s.split(".")[0] in modalities | {"trunk", "train"} for a in ("--set", s)]
    if words[:3] == ["mmgan", "data", "pack"]:
        extra = ["--limit", "64", "--set", "image.image_size=32"]
    if words[:2] == ["mmgan", "eval"]:
        line = re.sub(r" -n \d+", "", line)
        extra = ["-n", "130"]
    return " ".join([line, *extra])


def latest_run(cwd: Path, modality: str) -> Path:
    runs = [p.parent for p in (cwd / "runs").glob("*/config.toml")
            if f"[{modality}]" in p.read_text(encoding="utf-8")]
    return max(runs, key=lambda p: p.stat().st_mtime)


@pytest.mark.slow
def test_the_readme_s_commands_run_as_written(tmp_path):
    cwd, home = tmp_path / "work", tmp_path / "home"
    (home / "pictures" / "faces").mkdir(parents=True)
    cwd.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(home / "pictures" / "faces" / f"{i}.png")
    scipy.io.wavfile.write(cwd / "input.wav", 22050, (0.1 * np.sin(np.arange(22050) * 0.05)).astype(np.float32))
    env = {**os.environ, "HOME": str(home), "OMP_NUM_THREADS": "1", "MMGAN_PLUGINS": "image,speech"}
    bindir = Path(sys.executable).parent
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    ran = []
    for command in readme_commands():
        if any(command.startswith(prefix) for prefix in SKIP):
            continue
        line = runnable(command)
        if "RUN" in line:
            modality = "speech" if line.startswith("mmgan vocode") else "image"
            line = line.replace("RUN", str(latest_run(cwd, modality)))
        result = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"README: {command}\nran: {line}\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        ran.append(command)
    assert len(ran) >= 15, ran
    assert (cwd / "grid.png").is_file() and (cwd / "out.wav").is_file() and (cwd / "runs" / "faces-again").is_dir()


def test_every_readme_command_is_run_or_skipped_for_a_reason():
    commands = readme_commands()
    assert any(c.startswith("mmgan run --plugin image") for c in commands)
    for prefix, reason in SKIP.items():
        assert any(c.startswith(prefix) for c in commands), f"skip entry {prefix!r} matches no README command"
        assert reason
