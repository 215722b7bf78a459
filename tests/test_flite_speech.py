"""benchmarks/flite_speech.py writes a real-speech folder the speech plugin reads, with disjoint train and test
sentences, and benchmarks/espeak_speech.py an independent held-out one; benchmarks/quality_speech.py measures
Griffin-Lim on such a folder, without a run, into JSON lines."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmgan_speech.audio import read_wav, write_wav
from mmgan_speech.datasets import find_wav_files, open_speech_source

ROOT = Path(__file__).resolve().parents[1]
SR = 22050


def run_script(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.skipif(shutil.which("flite") is None, reason="needs Debian's flite (apt-get install flite)")
def test_flite_speech_writes_disjoint_splits_the_plugin_opens(tmp_path: Path) -> None:
    out = tmp_path / "flite"
    done = run_script("flite_speech.py", "--out", str(out), "--voices", "slt,awb,nosuch", "--train", "2", "--test", "1")
    assert "no voice 'nosuch'" in done.stdout
    assert "train: 4 clips" in done.stdout and "test: 2 clips" in done.stdout

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["voices"] == ["slt", "awb"]
    files = manifest["files"]
    assert sorted(f["path"] for f in files) == sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav"))
    for split in ("train", "test"):
        assert {f["voice"] for f in files if f["split"] == split} == {"slt", "awb"}
    train = {f["sentence"] for f in files if f["split"] == "train"}
    test = {f["sentence"] for f in files if f["split"] == "test"}
    assert len(train) == 4 and len(test) == 2 and not train & test

    for f in files:
        wave = read_wav(out / f["path"], f["sample_rate"])
        assert f["sample_rate"] == 16000 and wave.size / 16000 == pytest.approx(f["seconds"], abs=1e-3)
        assert np.abs(wave).max() > 0.05  # speech, not silence
    for split, count in (("train", 4), ("test", 2)):
        data = open_speech_source(str(out / split), 8192, SR, 0, "pad")
        assert len(data.files) == count and not data.skipped and data[0].shape == (1, 8192)
    assert len(find_wav_files(out / "test")) == 2


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs Debian's espeak-ng (apt-get install espeak-ng)")
def test_espeak_speech_writes_a_held_out_folder_at_the_plugin_rate(tmp_path: Path) -> None:
    out = tmp_path / "espeak"
    done = run_script("espeak_speech.py", "--out", str(out), "--voices", "en-us,en-us+f3", "--clips", "1")
    assert "2 clips" in done.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["voice"] for f in manifest["files"]] == ["en-us", "en-us+f3"]
    assert len({f["sentence"] for f in manifest["files"]}) == 2
    for f in manifest["files"]:
        wave = read_wav(out / f["path"], SR)
        assert f["sample_rate"] == SR and wave.size / SR == pytest.approx(f["seconds"], abs=1e-3)
        assert np.abs(wave).max() > 0.05  # speech, not silence
    data = open_speech_source(str(out / "test"), 8192, SR, 0, "pad")
    assert len(data.files) == 2 and not data.skipped
    # an unknown voice is a one-line error, and nothing half-written is left behind
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "espeak_speech.py"), "--out", str(tmp_path / "bad"),
                          "--voices", "nosuch", "--clips", "1"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode != 0 and "espeak-ng -v nosuch failed" in bad.stderr
    assert not [f for f in (tmp_path / "bad").rglob("*") if f.is_file()]


@pytest.mark.slow
def test_quality_speech_measures_griffin_lim_on_a_folder_without_a_run(tmp_path: Path) -> None:
    t = np.arange(int(1.5 * SR)) / SR
    pitch = 2 * np.pi * np.cumsum(120.0 + 30.0 * np.sin(2 * np.pi * 3.0 * t)) / SR  # a gliding voice
    harmonic = sum(np.sin(k * pitch) / k for k in range(1, 12)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4.0 * t))
    (tmp_path / "clips").mkdir()
    write_wav(tmp_path / "clips" / "voice.wav", 0.3 * harmonic, SR)
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"contender": "earlier row"}\n')

    done = run_script(
        "quality_speech.py",
        "--data",
        str(tmp_path / "clips"),
        "--contenders",
        "griffin-lim",
        "--clips",
        "1",
        "--seconds",
        "1",
        "--json",
        str(rows),
        "--threads",
        "1",
    )
    assert "| griffin-lim |" in done.stdout and "| mmgan |" not in done.stdout

    lines = rows.read_text().splitlines()
    assert len(lines) == 2  # appended
    row = json.loads(lines[1])
    assert row["contender"] == "griffin-lim" and row["run"] is None and row["data"] == str(tmp_path / "clips")
    assert row["clips"] == 1 and row["seconds"] == 1.0
    assert all(math.isfinite(row["metrics"][name]) for name in ("mel_l1", "mrstft", "mcd_db"))
    # PESQ and STOI (with the audio-metrics extra) may find no speech in a synthetic voice: None, never NaN
    assert all(value is None or math.isfinite(value) for value in row["metrics"].values())
