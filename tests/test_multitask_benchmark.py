"""benchmarks/multitask.py at tiny sizes: every contender trains (resuming what was stopped), is scored with
mmgan eval per modality, and the table compares each with the single-task run of its modality."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SPEECH_TINY, TINY
from test_flite_speech import run_script

SETTINGS = [s for s in (*TINY, *SPEECH_TINY) if s != "train.eval_every=0"]


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


def test_a_remedy_contender_is_the_run_of_both_with_its_setting(tmp_path: Path) -> None:
    root = tmp_path / "mt"
    sets = [a for s in (*SETTINGS, "train.steps=1", "train.batch_size=2", "image.steps=1", "speech.steps=1")
            for a in ("--set", s)]
    run_script("multitask.py", "train", "--root", str(root), "--seeds", "0", "--contenders", "both-pcgrad",
               "both-image-unshared", *sets)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["both-image-unshared-s0", "both-pcgrad-s0"]
    assert 'gradients = "pcgrad"' in (root / "both-pcgrad-s0" / "config.toml").read_text()
    unshared = (root / "both-image-unshared-s0" / "config.toml").read_text()
    assert 'gradients = "sum"' in unshared and "trunk_depth = 0" in unshared
