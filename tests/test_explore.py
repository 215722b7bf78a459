"""``mmgan explore`` (slerp paths between noise draws; a morph between two mels' trunk states) and the report's
section of a run's collapses, memorisation verdict and exploration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import SPEECH_TINY, TINY, TINY_CORE, assert_one_line_error
from PIL import Image

import mmgan.config as cfg
from mmgan.contract.manager import get_modality
from mmgan.engine.trainer import Trainer
from mmgan.evaluation.explore import morph, slerp
from mmgan.evaluation.inference import load_generator


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("explore") / "run"
    Trainer(cfg.resolve(get_modality, plugins=["image"], out=out, steps=2, batch_size=8, overrides=TINY),
            progress=False).fit()
    return out


def test_slerp_follows_the_great_circle_from_one_end_to_the_other():
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 1.0])
    path = slerp(a, b, torch.linspace(0, 1, 5))
    assert torch.allclose(path[0], a) and torch.allclose(path[-1], b, atol=1e-6)
    assert torch.allclose(path.norm(dim=1), torch.linspace(3, 1, 5), atol=1e-5)  # the norm goes linearly
    middle = path[2] / path[2].norm()
    assert torch.allclose(middle, torch.tensor([1.0, 1.0]) / 2**0.5, atol=1e-6)  # halfway round, not across
    assert torch.allclose(slerp(a, 2 * a, torch.tensor([0.5]))[0], 1.5 * a)  # parallel: a straight line


def test_explore_writes_one_grid_of_paths_for_an_image_run(cli_run, image_run):
    result = cli_run("explore", image_run, "--rows", 3, "--steps", 5)
    assert result.exit_code == 0, result.output
    out = image_run / "explore" / "image"
    facts = json.loads((out / "explore.json").read_text())
    assert facts["kind"] == "slerp between noise draws" and facts["files"] == ["interpolation.png"]
    with Image.open(out / "interpolation.png") as grid:  # 5 columns, 3 rows of 32-pixel images (2-pixel gaps)
        assert grid.size == (5 * 34 + 2, 3 * 34 + 2)


def test_explore_mistakes_are_one_line(cli_run, tmp_path, image_run):
    assert_one_line_error(cli_run("explore", tmp_path), "has no exported generator")
    assert_one_line_error(cli_run("explore", image_run, "--steps", 1, "-o", tmp_path / "x"), "--steps >= 2")


@pytest.mark.slow
def test_a_vocoder_morphs_between_two_mels_trunk_states_from_one_to_the_other(cli_run, tmp_path):
    run = tmp_path / "speech"
    Trainer(cfg.resolve(get_modality, plugins=["speech"], out=run, steps=1, batch_size=2,
                        overrides=[*TINY_CORE, *SPEECH_TINY, "speech.generator=vocos"]), progress=False).fit()
    result = cli_run("explore", run, "--rows", 1, "--steps", 3, "-o", tmp_path / "morph")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "morph").iterdir()) == [
        "explore.json", "interpolation_0.png", "interpolation_0.wav"]
    # the path's ends are the generator's own outputs for the two mels; between them, neither
    generators, _ = load_generator(run, "speech")
    x0, x1 = torch.randn(2, 80, 24, generator=torch.Generator().manual_seed(0)) - 5
    with torch.no_grad():
        path = morph(generators, "speech", x0, x1, torch.linspace(0, 1, 3))
        ends = generators("speech", torch.stack([x0, x1])).float()
    assert torch.allclose(path[0], ends[0], atol=1e-5) and torch.allclose(path[-1], ends[1], atol=1e-5)
    assert not torch.allclose(path[1], ends[0], atol=1e-3) and not torch.allclose(path[1], ends[1], atol=1e-3)


@pytest.mark.slow
def test_the_report_shows_collapses_the_memorisation_verdict_and_the_exploration(cli_run, image_run):
    assert cli_run("eval", image_run, "-n", 150, "--batch-size", 100).exit_code == 0
    assert cli_run("explore", image_run, "--rows", 2, "--steps", 3).exit_code == 0
    facts = json.loads((image_run / "run.json").read_text())
    facts["collapse"] = [{"modality": "image", "signal": "diversity", "onset": 1, "step": 2, "value": 0.1,
                          "threshold": 0.2, "action": "warn"}]
    (image_run / "run.json").write_text(json.dumps(facts))
    result = cli_run("report", image_run)
    assert result.exit_code == 0, result.output
    page = (image_run / "report" / "index.html").read_text()
    assert "collapse, memorisation and latent exploration" in page
    assert "Collapse found at step 2 (diversity, since step 1" in page
    assert "Memorisation check (mmgan eval): not copying" in page
    assert "interpolation" in page and "nearest the training data" in page
