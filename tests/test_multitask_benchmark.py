"""benchmarks/multitask.py at tiny sizes: every contender trains (resuming what was stopped), is scored with
mmgan eval per modality, and the table compares each with the single-task run of its modality."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SPEECH_TINY, TINY
from test_flite_speech import run_script

SETTINGS = [s for s in (*TINY, *SPEECH_TINY) if s != "train.eval_every=0"]


@pytest.mark.slow
def test_the_multitask_benchmark_trains_scores_and_tabulates(tmp_path: Path) -> None:
    root = tmp_path / "mt"
    sets = [a for s in (*SETTINGS, "train.steps=1", "train.batch_size=2", "image.steps=1", "speech.steps=1")
            for a in ("--set", s)]
    run_script("multitask.py", "train", "--root", str(root), "--seeds", "0", *sets)
    runs = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert runs == ["both-s0", "image-from-speech-s0", "image-s0", "speech-from-image-frozen-s0",
                    "speech-from-image-s0", "speech-s0"]
    frozen = (root / "speech-from-image-frozen-s0" / "config.toml").read_text()
    assert "freeze_trunk = true" in frozen and "image-s0" in frozen
    run_script("multitask.py", "score", "--root", str(root), "--seeds", "0", "--num", "image=130", "--num", "speech=1")
    rows = [json.loads(line) for line in (root / "scores.jsonl").read_text().splitlines()]
    assert sorted((r["contender"], r["modality"]) for r in rows) == sorted([
        ("image", "image"), ("speech", "speech"), ("both", "image"), ("both", "speech"),
        ("speech<-image", "speech"), ("speech<-image-frozen", "speech"), ("image<-speech", "image")])
    assert all(r["wall_s"] is None or r["wall_s"] >= 0 for r in rows)
    assert all(r["train_cpu_s"] > 0 for r in rows)
    table = run_script("multitask.py", "table", "--root", str(root), "--seeds", "0").stdout
    assert "| both | 1 |" in table and ("within the spread" in table or "beyond the spread" in table)


def test_a_remedy_or_control_contender_is_its_run_with_its_setting(tmp_path: Path) -> None:
    """The command each contender trains with (the training itself: the test above)."""
    contenders = ["--contenders", "both-pcgrad", "both-image-unshared", "image-fp32"]
    out = run_script("multitask.py", "train", "--root", str(tmp_path / "mt"), "--seeds", "0", "--dry-run", *contenders,
                     "--set", "train.steps=1").stdout
    commands = {line.split("--out ")[1].split()[0].rsplit("/", 1)[1]: line for line in out.splitlines()
                if " run --plugin " in line}
    assert sorted(commands) == ["both-image-unshared-s0", "both-pcgrad-s0", "image-fp32-s0"]
    assert "--set train.mixed_precision=no" in commands["image-fp32-s0"]
    assert "--plugin speech" not in commands["image-fp32-s0"]
    assert "--set trunk.gradients=pcgrad" in commands["both-pcgrad-s0"]
    assert "--plugin image --plugin speech" in commands["both-image-unshared-s0"]
    assert "--set image.trunk_depth=0" in commands["both-image-unshared-s0"]
    assert all("--set train.steps=1" in c for c in commands.values())
    assert not (tmp_path / "mt" / "image-fp32-s0").exists()


def test_the_table_names_the_other_measures_worse_beyond_the_spread(tmp_path: Path) -> None:
    root = tmp_path / "mt"
    root.mkdir()

    def row(contender: str, seed: int, **metrics: float) -> dict:
        return {"run": f"{contender}-s{seed}", "contender": contender, "seed": seed, "modality": "speech",
                "metrics": metrics, "wall_s": 60.0, "train_cpu_s": 60.0}

    rows = [row("speech", 0, mcd_db=0.60, stoi=0.927, pesq_wb=2.5, mrstft=1.00),
            row("speech", 1, mcd_db=0.61, stoi=0.928, pesq_wb=2.6, mrstft=1.01),
            # better MCD; STOI worse by more than speech's spread (0.001); PESQ worse but within its spread (0.1);
            # MR-STFT better
            row("both", 0, mcd_db=0.595, stoi=0.920, pesq_wb=2.50, mrstft=0.99),
            row("both", 1, mcd_db=0.60, stoi=0.921, pesq_wb=2.56, mrstft=1.00)]
    (root / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = run_script("multitask.py", "table", "--root", str(root)).stdout
    both = next(line for line in table.splitlines() if line.startswith("| both |"))
    assert "better, within the spread" in both  # MCD: -0.0075 against a spread of 0.01
    assert both.rstrip().endswith("| stoi (-0.007) |")
    alone = next(line for line in table.splitlines() if line.startswith("| speech |"))
    assert alone.rstrip().endswith("| - | - |")
