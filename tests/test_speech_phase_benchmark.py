"""benchmarks/speech_phase.py: which half of a vocos vocoder's spectrum (magnitude or phase) is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY_CORE
from test_flite_speech import run_script

from mmgan import config as cfg
from mmgan.contract.manager import get_modality
from mmgan.engine import Trainer


@pytest.mark.slow
def test_the_diagnostic_scores_a_run_s_phase_and_the_references(tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = cfg.resolve(get_modality, plugins=["speech"], out=run, steps=2, batch_size=2,
                         overrides=[*TINY_CORE, "speech.segment_length=2048", "speech.mpd_channels=2",
                                    "speech.mrd_channels=2", "speech.adversarial_start=2",
                                    "speech.phase_advance=true", "speech.magnitude_prior=true"])
    Trainer(config, progress=False).fit()
    done = run_script("speech_phase.py", str(run), "--clips", "2", "--seconds", "0.5")
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:2]): float(line.strip("|").split("|")[2])
            for line in done.stdout.splitlines() if line.startswith("| ") and line.count("|") == 4
            and not line.startswith("| source")}
    names = {name for _, name in rows}
    assert {"true magnitude + random phase", "true magnitude + centre advance", "wave",
            "true magnitude + its phase", "prior magnitude + its phase", "phase loss"} <= names
    assert all(value >= 0 for value in rows.values())
    # a fresh phase-advancing head's phase is the advance itself: with the true magnitude, the same wave
    assert abs(rows[(str(run), "true magnitude + its phase")]
               - rows[("(no run)", "true magnitude + centre advance")]) < 0.05


@pytest.mark.slow
def test_the_projection_probe_rebuilds_the_wave_from_the_head_s_spectrum_and_scores_each_row(tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = cfg.resolve(get_modality, plugins=["speech"], out=run, steps=2, batch_size=2,
                         overrides=[*TINY_CORE, "speech.segment_length=2048", "speech.mpd_channels=2",
                                    "speech.mrd_channels=2", "speech.adversarial_start=2"])
    Trainer(config, progress=False).fit()
    done = run_script("speech_projections.py", str(run), "--clips", "1", "--seconds", "0.5", "--iterations", "0,2")
    rows = {line.strip("|").split("|")[0].strip(): [float(c) for c in line.strip("|").split("|")[1:3]]
            for line in done.stdout.splitlines() if line.startswith("| ") and not line.startswith("| made from")}
    assert {"wave", "its magnitude, 0 from its phase", "its magnitude, 2 from its phase",
            "NNLS magnitude, 2 from its phase", "griffin-lim, 32 from random phase"} <= set(rows)
    # no projection from the head's own magnitude and phase is the wave itself: the spectrum was caught whole
    assert rows["its magnitude, 0 from its phase"] == rows["wave"]
    assert rows["its magnitude, 2 from its phase"] != rows["wave"]
