"""benchmarks/speech_curve.py: a run's held-out evaluations against the minutes of training (train_s), with
Griffin-Lim on the same clips, the crossing points and the real / mmgan / Griffin-Lim spectrogram triple."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SPEECH_TINY, TINY_CORE
from test_flite_speech import run_script

from mmgan import config as cfg
from mmgan.contract.manager import get_modality
from mmgan.engine import Trainer


@pytest.mark.slow
def test_the_curve_joins_evaluations_with_training_minutes_and_griffin_lim(tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = cfg.resolve(get_modality, plugins=["speech"], out=run, steps=4, batch_size=2,
                         overrides=[*TINY_CORE, *SPEECH_TINY, "train.eval_every=2", "speech.eval_samples=1",
                                    "train.checkpoint_every=2", "train.keep_checkpoints=2"])
    Trainer(config, progress=False).fit()
    done = run_script("speech_curve.py", str(run), "--threads", "1", "--plot", str(tmp_path / "curve.png"),
                      "--triple", str(tmp_path / "triple.png"))
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 2 |") or line.startswith("| 4 |")]
    assert len(rows) == 2, done.stdout  # one row per evaluation, steps 2 and 4
    assert "| griffin-lim |" in done.stdout and "Griffin-Lim (" in done.stdout
    cached = json.loads((run / "griffin_lim.json").read_text())
    assert cached["settings"]["clips"] == 1 and cached["metrics"]["mcd_db"] >= 0
    assert (tmp_path / "curve.png").stat().st_size > 0 and (tmp_path / "triple.png").stat().st_size > 0
    assert {p.name for p in tmp_path.glob("triple_*.wav")} == {"triple_real.wav", "triple_mmgan.wav",
                                                             "triple_griffin-lim.wav"}
    # quality_speech.py scores one checkpoint's EMA generator (a curve's step kept before it is pruned)
    rows = tmp_path / "rows.jsonl"
    for checkpoint in ("step_000002", "step_000004"):
        run_script("quality_speech.py", str(run), "--checkpoint", str(run / "checkpoints" / checkpoint),
                   "--contenders", "mmgan", "--clips", "1", "--seconds", "1", "--threads", "1", "--json", str(rows))
    scored = [json.loads(line) for line in rows.read_text().splitlines()]
    assert [Path(r["checkpoint"]).name for r in scored] == ["step_000002", "step_000004"]
    assert scored[0]["metrics"]["mel_l1"] != scored[1]["metrics"]["mel_l1"]  # two different generators
