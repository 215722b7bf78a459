"""``mmgan report``: the static HTML report of tiny real runs (image, image + speech in one run, two image
runs compared), of a run still training and of one written before run.json; and the page in a real
headless Chromium: it loads without console errors and every picture and sound in it resolves."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TINY_CORE, assert_one_line_error, tiny_args
from test_distributed import SPEECH_TINY

from mmgan.cli.commands import build_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
IN_CI = os.environ.get("CI") == "true"


def run_cli(*args: object) -> str:
    result = CliRunner().invoke(build_cli(), [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    """2 steps, samples at both, one evaluation (FD needs 129 samples; each costs seconds), so a best export."""
    out = tmp_path_factory.mktemp("report") / "img"
    run_cli("run", "--plugin", "image", *tiny_args(out, steps=2),
            "--set", "train.eval_every=2", "--set", "train.sample_every=1", "--set", "image.eval_samples=130")
    return out


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory) -> Path:
    """Image and speech in one run, 2 steps, samples at both."""
    out = tmp_path_factory.mktemp("report") / "multi"
    extra = [x for item in (*SPEECH_TINY, "train.sample_every=1", "train.num_samples=4") for x in ("--set", item)]
    run_cli("run", "--plugin", "image", "--plugin", "speech", *tiny_args(out, steps=2, batch_size=2), *extra)
    return out


def files_of(run: Path) -> dict[str, float]:
    return {str(p.relative_to(run)): p.stat().st_mtime for p in run.rglob("*") if "report" not in p.parts}


@pytest.mark.slow
def test_report_of_an_image_run_shows_config_facts_curves_grids_and_the_best_step(image_run):
    before = files_of(image_run)
    out = run_cli("report", image_run)
    assert "index.html" in out
    assert files_of(image_run) == before  # it only reads the run
    report = image_run / "report"
    html = (report / "index.html").read_text()
    facts = json.loads((image_run / "run.json").read_text()) if (image_run / "run.json").exists() else {}
    assert "image_size" in html and "<code>8</code>" in html  # the config (image.ngf=8)
    assert "steps" in html and "2 of 2" in html
    if facts.get("torch"):
        assert facts["torch"] in html
    for plot in ("image_losses.png", "image_metrics.png", "run_run.png"):
        assert (report / "plots" / plot).stat().st_size > 0
    assert "g/adv" in html and "d/adv" in html and "fd" in html and "steps_per_s" in html
    for step in (1, 2):  # one grid per sample step, copied into the report
        assert (report / "media" / "run1" / "image" / f"step_{step:06d}.png").is_file()
        assert f'src="media/run1/image/step_{step:06d}.png"' in html
    best = json.loads((image_run / "export" / "best" / "image.json").read_text())["selected_by"]
    assert re.search(rf"best( and last)? \(step {best['step']}\)", html)
    assert re.search(rf'<tr class="best">\s*<td>{best["step"]} <span class="badge">best</span>', html)
    assert f"best: step {best['step']} by fd (min)" in html
    # a second report replaces the first
    run_cli("report", image_run)
    assert sorted(p.name for p in image_run.iterdir() if p.name.startswith(".report")) == []


def test_report_of_a_multi_task_run_has_each_modality_with_audio_and_mels(multi_run, tmp_path):
    run_cli("report", multi_run, "-o", tmp_path / "r")
    html = (tmp_path / "r" / "index.html").read_text()
    assert 'id="samples-image"' in html and 'id="samples-speech"' in html
    audio = re.findall(r'<audio controls preload="metadata" src="([^"]+)"', html)
    # 2 sample steps x 4 clips, real beside generated
    assert len(audio) == 16 and len(set(audio)) == 12  # the real clips are written once, shown at every step
    for href in audio:
        assert (tmp_path / "r" / href).stat().st_size > 44
        assert (tmp_path / "r" / href.replace(".wav", ".png")).is_file()  # each clip's log-mel
    assert "clip 1, real" in html and "clip 4, generated at step 2" in html
    assert "speech/g/mel" not in html and "g/mel" in html  # the speech losses are curves too


@pytest.mark.slow
def test_comparison_lists_config_differences_first_and_overlays_curves(image_run, tmp_path):
    other = tmp_path / "img-lr"
    run_cli("run", "--plugin", "image", *tiny_args(other, steps=2), "--set", "train.lr_d=0.0001")
    run_cli("report", image_run, other, "-o", tmp_path / "cmp")
    html = (tmp_path / "cmp" / "index.html").read_text()
    differences = html.index('id="differences"')
    assert differences < html.index('id="run"') < html.index('id="curves"')
    table = html[differences:html.index('id="run"')]
    assert "train.lr_d" in table and "0.0002" in table and "0.0001" in table
    assert "train.eval_every" in table and "run.out" not in table and "image.ngf" not in table
    assert "img-lr" in html and ">img<" in html  # both runs named
    assert (tmp_path / "cmp" / "media" / "run2" / "image" / "step_000002.png").is_file()


@pytest.mark.slow
def test_report_of_a_run_still_training_and_of_an_old_run(image_run, tmp_path):
    running = tmp_path / "running"
    shutil.copytree(image_run, running, ignore=shutil.ignore_patterns("report", "checkpoints"))
    facts = {"mmgan_version": "0.1.0", "torch": "2.x", "started": "2026-01-01T00:00:00Z", "ended": None,
             "status": "running"}
    (running / "run.json").write_text(json.dumps(facts))
    with open(running / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "image/d/ad')  # the line the training is writing
    run_cli("report", running)
    html = (running / "report" / "index.html").read_text()
    assert "not ended" in html and "2026-01-01T00:00:00Z" in html
    unrecorded = re.search(r"unknown, not recorded by this run: ([^<]*)<", html).group(1).split(", ")
    assert {"processes", "device", "precision", "host", "plugins"} <= set(unrecorded)
    assert "torch" not in unrecorded and "2.x" in html
    (running / "run.json").unlink()  # a run from before run.json
    run_cli("report", running)
    assert "no run.json" in (running / "report" / "index.html").read_text()


def test_report_mistakes_are_one_line(image_run, tmp_path, cli_run, monkeypatch):
    assert_one_line_error(cli_run("report", tmp_path / "nothing"), "not a run directory")
    assert_one_line_error(cli_run("report", image_run, image_run), "needs -o")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert_one_line_error(cli_run("report", image_run, "-o", tmp_path / "mine"), "not an mmgan report")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # not installed
    assert_one_line_error(cli_run("report", image_run, "-o", tmp_path / "r"), "mmgan[report]")


def test_report_help_imports_neither_torch_nor_matplotlib():
    script = ("import sys; from mmgan.cli.commands import build_cli; build_cli().main(['report', '--help'], "
              "standalone_mode=False); print(sorted(m for m in ('torch', 'matplotlib', 'jinja2') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "MMGAN_PLUGINS": "image,speech"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.skipif(CHROMIUM is None and not IN_CI,
                    reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it under CI)")
@pytest.mark.slow
def test_report_in_a_real_browser(multi_run, tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if IN_CI:
            raise
        pytest.skip("needs playwright (pip install -e '.[dev]')")
    assert CHROMIUM is not None, "chromium is missing: .ci/run installs it under CI=true"
    run_cli("report", multi_run, "-o", tmp_path / "r")
    index = tmp_path / "r" / "index.html"
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
                    if msg.type in ("error", "warning") else None)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("requestfailed", lambda req: problems.append(f"failed: {req.url}"))
            page.goto(index.as_uri(), wait_until="load")
            page.wait_for_function("[...document.querySelectorAll('audio')].every(a => a.readyState >= 1 || a.error)",
                                   timeout=20_000)
            images = page.evaluate("[...document.images].map(i => [i.getAttribute('src'), i.naturalWidth])")
            sounds = page.evaluate("[...document.querySelectorAll('audio')].map(a => [a.getAttribute('src'), "
                                   "a.readyState, a.error ? a.error.code : null, a.duration])")
            page.screenshot(path=str(tmp_path / "report.png"))
            # the step slider works: moving it shows another step's grid
            shown = page.evaluate("document.querySelector('#samples-image .slide.current .group').dataset.step")
            page.locator("#samples-image input[type=range]").fill("1")
            moved = page.evaluate("document.querySelector('#samples-image .slide.current .group').dataset.step")
        finally:
            browser.close()
    assert problems == []
    assert len(images) >= 3 + 2 + 16 and all(width > 0 for _, width in images), images
    assert len(sounds) == 16 and all(ready >= 1 and error is None and duration > 0
                                     for _, ready, error, duration in sounds), sounds
    assert (shown, moved) == ("1", "2")
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_a_third_party_modality_adds_its_own_section(tmp_path, cli_run):
    """The example plugin's ring2d answers the report hook too (examples/mmgan-toy-plugin)."""
    from mmgan.testing import plugin_registered

    toy = Path(__file__).resolve().parents[1] / "examples" / "mmgan-toy-plugin"
    if str(toy) not in sys.path:
        sys.path.insert(0, str(toy))
    with plugin_registered("mmgan_toy.ring:plugin", name="ring2d"):
        settings = [*TINY_CORE, "ring2d.hidden=32", "ring2d.num_points=256", "train.sample_every=1"]
        result = cli_run("run", "--plugin", "ring2d", "--out", tmp_path / "ring", "--steps", "2", "--batch-size", "8",
                         "--no-progress", *[x for item in settings for x in ("--set", item)])
        assert result.exit_code == 0, result.output
        assert cli_run("report", tmp_path / "ring").exit_code == 0
    html = (tmp_path / "ring" / "report" / "index.html").read_text()
    assert "ring2d: generated points (blue) over real ones (grey)" in html
    assert 'src="media/run1/ring2d/step_000002.png"' in html and "ring2d: losses" in html
    # without the plugin, the section says where the samples are instead
    run_cli("report", tmp_path / "ring")
    html = (tmp_path / "ring" / "report" / "index.html").read_text()
    assert "no installed plugin shows ring2d samples" in html


def test_picture_per_step_shows_the_best_and_the_last_first():
    from mmgan.report import ReportSection

    pictures = {step: Path(f"step_{step:06d}.png") for step in (500, 1000, 1500)}
    section = ReportSection.picture_per_step("grids", pictures, best_step=900)
    assert [g.title for g in section.highlights] == ["best (step 900)", "last (step 1500)"]
    assert section.highlights[0].items[0].caption == "step 1000, the sample step nearest 900"
    assert [g.step for g in section.groups] == [500, 1000, 1500] and section.layout == "slider"
    assert [g.title for g in ReportSection.picture_per_step("grids", pictures, 1500).highlights] == [
        "best and last (step 1500)"]
    assert [g.title for g in ReportSection.picture_per_step("grids", pictures).highlights] == ["last (step 1500)"]
    with pytest.raises(ValueError, match="layout"):
        ReportSection("x", layout="grid")


def test_speech_clips_are_cut_apart_again():
    import numpy as np

    from mmgan_speech.report import split_clips

    clips = [np.full(100, i + 1.0) for i in range(3)]
    gap = np.zeros(7)
    joined = np.concatenate([clips[0], gap, clips[1], gap, clips[2]])
    parts = split_clips(joined, 7, 3)
    assert [p.tolist() for p in parts] == [c.tolist() for c in clips]
    assert len(split_clips(joined, 7, 4)) == 3  # four do not fit: the count that does


def test_a_report_again_never_deletes_files_you_added_and_writes_into_an_empty_current_directory(
        image_run, tmp_path, cli_run, monkeypatch):
    # faults row 60: `report` again after adding NOTES.md and mine/ to RUN/report deleted them
    out = tmp_path / "r"
    run_cli("report", image_run, "-o", out)
    (out / "NOTES.md").write_text("mine\n")
    (out / "mine").mkdir()
    (out / "mine" / "plot.png").write_bytes(b"x")
    assert_one_line_error(cli_run("report", image_run, "-o", out), "NOTES.md", "did not write")
    assert (out / "NOTES.md").read_text() == "mine\n" and (out / "mine" / "plot.png").is_file()
    (out / "NOTES.md").unlink()
    shutil.rmtree(out / "mine")
    run_cli("report", image_run, "-o", out)  # only its own files: replaced
    # faults row 61: `report RUN -o .` in an empty directory failed with "PosixPath('.') has an empty name"
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    run_cli("report", image_run, "-o", ".")
    assert (here / "index.html").is_file() and here.is_dir()


def test_a_corrupt_config_or_run_json_is_said_so_not_called_missing(image_run, tmp_path):
    # faults row 57: the page said "no config.toml" and "a run written before mmgan recorded its facts"
    broken = tmp_path / "broken"
    shutil.copytree(image_run, broken, ignore=shutil.ignore_patterns("report", "checkpoints"))
    (broken / "config.toml").write_text("[run\nmodalities = ")
    (broken / "run.json").write_text("{not json")
    run_cli("report", broken)
    html = (broken / "report" / "index.html").read_text()
    assert "config.toml cannot be read" in html and "no config.toml" not in html
    assert "run.json cannot be read: JSONDecodeError" in html and "no run.json" not in html


@pytest.mark.slow
def test_a_run_with_thousands_of_metric_names_gets_a_bounded_report(image_run, tmp_path):
    # faults row 64: 3000 names took over 310 s and 4.4 GB (one picture of 1000 rows of panels), then was killed
    many = tmp_path / "many"
    shutil.copytree(image_run, many, ignore=shutil.ignore_patterns("report", "checkpoints"))
    with open(many / "metrics.jsonl", "a") as f:
        for step in (10, 20, 30):
            f.write(json.dumps({"step": step, **{f"image/g/term{i}": 0.1 * i for i in range(3000)}}) + "\n")
    run_cli("report", many)
    html = (many / "report" / "index.html").read_text()
    assert re.search(r"the first 24 of 30\d\d names; all are in metrics.jsonl", html)
