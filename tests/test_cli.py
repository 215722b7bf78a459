"""The command line end to end on tiny sizes, and every bad input as one line with a non-zero exit."""

import os
import subprocess
import sys

import pytest
from conftest import TINY, assert_one_line_error, read_metrics, tiny_args
from PIL import Image


def test_run_generate_and_plugins_end_to_end(cli_run, tmp_path):
    run_dir = tmp_path / "run"
    result = cli_run("run", "--plugin", "image", *tiny_args(run_dir, steps=4, extra=("train.sample_every=2",)))
    assert result.exit_code == 0, result.output
    assert (run_dir / "config.toml").is_file()
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2, 3, 4]
    logged = set(read_metrics(run_dir, timing=True)[0])
    assert {"image/d/adv", "image/g/adv", "steps_per_s", "train_s", "train_cpu_s"} <= logged
    assert sorted(p.name for p in (run_dir / "samples" / "image").iterdir()) == ["step_000002.png", "step_000004.png"]
    assert (run_dir / "export" / "image.safetensors").is_file()

    grid = tmp_path / "grid.png"
    result = cli_run("generate", run_dir, "-n", "9", "-o", grid)
    assert result.exit_code == 0, result.output
    with Image.open(grid) as img:
        assert img.size == (3 * 32 + 4 * 2, 3 * 32 + 4 * 2)

    result = cli_run("plugins")
    assert result.exit_code == 0
    assert "image 0.1.0" in result.output and "modalities: image" in result.output
    assert "build_discriminator" in result.output


def test_saved_config_reruns_the_same_run(cli_run, tmp_path):
    first = tmp_path / "first"
    assert cli_run("run", "--plugin", "image", *tiny_args(first, steps=2)).exit_code == 0
    second = tmp_path / "second"
    result = cli_run("run", "--config", first / "config.toml", "--out", second, "--no-progress")
    assert result.exit_code == 0, result.output
    strip = [{k: v for k, v in r.items() if k != "steps_per_s"} for r in read_metrics(first)]
    assert strip == [{k: v for k, v in r.items() if k != "steps_per_s"} for r in read_metrics(second)]


def test_resume_continues_to_more_steps(cli_run, tmp_path):
    run_dir = tmp_path / "run"
    assert cli_run("run", "--plugin", "image", *tiny_args(run_dir, steps=2)).exit_code == 0
    result = cli_run("run", "--resume", run_dir, "--steps", "3", "--no-progress")
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2, 3]


def test_console_script_and_python_m_work(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for cmd in ([os.path.join(os.path.dirname(sys.executable), "mmgan"), "--help"],
                [sys.executable, "-m", "mmgan", "plugins"]):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
    assert "image" in done.stdout


# ---- bad input -------------------------------------------------------------------------------------

def test_missing_and_empty_data_folders(cli_run, tmp_path):
    missing = tmp_path / "nope"
    assert_one_line_error(cli_run("run", "--plugin", "image", "--data", missing, *tiny_args(tmp_path / "r1")),
                          str(missing))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(cli_run("run", "--plugin", "image", "--data", empty, *tiny_args(tmp_path / "r2")),
                          str(empty))
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def test_unreadable_images_are_skipped_then_all_unreadable_is_an_error(cli_run, tmp_path, caplog):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(8):
        Image.new("RGB", (40, 30), (i * 30, 0, 0)).save(folder / f"ok{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "notes.jpg").write_text("hello")
    result = cli_run("run", "--plugin", "image", "--data", folder, *tiny_args(tmp_path / "run", steps=1))
    assert result.exit_code == 0, result.output
    assert "skipped 2 of 10" in caplog.text

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"junk")
    assert_one_line_error(cli_run("run", "--plugin", "image", "--data", bad, *tiny_args(tmp_path / "r")), str(bad))


def test_bad_toml_unknown_key_unknown_plugin_and_loss(cli_run, tmp_path):
    toml = tmp_path / "bad.toml"
    toml.write_text("[train\n")
    tiny = tiny_args(tmp_path / "never")
    assert_one_line_error(cli_run("run", "--plugin", "image", *tiny, "--config", toml), "bad.toml", "not valid TOML")
    assert_one_line_error(cli_run("run", "--plugin", "image", *tiny, "--config", tmp_path), "cannot be read")
    toml.write_text("[run]\nmodalities = 5\n")
    assert_one_line_error(cli_run("run", *tiny, "--config", toml), "modalities must be a list")
    assert_one_line_error(cli_run("run", "--plugin", "image", *tiny, "--set", "train.lrr=1"),
                          "train.lrr", "valid keys in [train]", "lr_g")
    assert_one_line_error(cli_run("run", "--plugin", "image", *tiny, "--set", "run.modalities=x"), "--plugin")
    assert not (tmp_path / "never").exists()
    assert_one_line_error(cli_run("run", "--plugin", "video"), "'video'", "installed modalities: image")
    assert_one_line_error(cli_run("run", "--plugin", "image", *tiny_args(tmp_path / "r"), "--set", "train.loss=wgan"),
                          "'wgan'", "hinge", "lsgan", "nonsaturating")


def test_non_positive_steps_and_batch_size(cli_run, tmp_path):
    def bad(*args):
        return cli_run("run", "--plugin", "image", *tiny_args(tmp_path / "never"), *args)
    assert_one_line_error(bad("--steps", "0"), "train.steps must be positive")
    assert_one_line_error(bad("--batch-size", "-1"), "train.batch_size must be positive")
    assert_one_line_error(bad("--seed", "-1"), "run.seed must be in [0, 2**32)")
    assert_one_line_error(bad("--seed", str(2**33)), "run.seed must be in [0, 2**32)")
    assert_one_line_error(bad("--set", "trunk.expansion=0"), "trunk.expansion must be between 1 and 64, got 0")
    (tmp_path / "file").write_text("x")
    assert_one_line_error(cli_run("run", "--plugin", "image", "--out", tmp_path / "file"), "is not a directory")
    assert not (tmp_path / "never").exists()


def test_data_smaller_than_a_batch_leaves_nothing_behind(cli_run, tmp_path):
    folder = tmp_path / "few"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (i * 60, 0, 0)).save(folder / f"{i}.png")
    run_dir = tmp_path / "run"
    assert_one_line_error(cli_run("run", "--plugin", "image", "--data", folder, *tiny_args(run_dir)),
                          "holds 3 image samples", "batch of 8")
    assert not run_dir.exists()
    assert cli_run("run", "--plugin", "image", "--data", folder, *tiny_args(run_dir, batch_size=2)).exit_code == 0


def test_resume_without_checkpoint_and_existing_run(cli_run, tmp_path):
    assert_one_line_error(cli_run("run", "--resume", tmp_path / "none"), "has no config.toml")
    assert_one_line_error(cli_run("run", "--resume", tmp_path, "--out", tmp_path / "x"), "leave out --config and --out")
    run_dir = tmp_path / "run"
    assert cli_run("run", "--plugin", "image", *tiny_args(run_dir, steps=1)).exit_code == 0
    before = (run_dir / "metrics.jsonl").read_bytes()
    assert_one_line_error(cli_run("run", "--plugin", "image", *tiny_args(run_dir, steps=1)),
                          "already holds a run", "last checkpoint is step 1", "--resume", "--overwrite")
    assert (run_dir / "metrics.jsonl").read_bytes() == before
    for ckpt in (run_dir / "checkpoints").iterdir():
        for f in ckpt.iterdir():
            f.unlink()
        ckpt.rmdir()
    # a run stopped before its first checkpoint is not a dead end (fault 13): the message says both ways,
    # and --resume trains it from step 0 with its own config
    assert_one_line_error(cli_run("run", "--plugin", "image", *tiny_args(run_dir, steps=1)),
                          "no checkpoint yet", "--resume starts it again from step 0", "--overwrite")
    result = cli_run("run", "--resume", run_dir, "--steps", "2")
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in read_metrics(run_dir) if "image/d/adv" in r] == [1, 2]


def test_corrupt_checkpoint_and_bad_generate_inputs(cli_run, tmp_path):
    run_dir = tmp_path / "run"
    assert cli_run("run", "--plugin", "image", *tiny_args(run_dir, steps=1)).exit_code == 0
    (run_dir / "checkpoints" / "step_000001" / "optimizer.bin").write_bytes(b"garbage")
    assert_one_line_error(cli_run("run", "--resume", run_dir, "--steps", "2"), "step_000001 cannot be loaded")
    assert_one_line_error(cli_run("generate", tmp_path, "-o", tmp_path / "g.png"), "no exported generator")
    assert_one_line_error(cli_run("generate", run_dir, "-n", "0", "-o", tmp_path / "g.png"), "-n must be positive")
    assert_one_line_error(cli_run("generate", run_dir, "-o", tmp_path), "is a directory")
    assert_one_line_error(cli_run("generate", run_dir, "-o", tmp_path / "g.gif"), "g.gif", ".png, .jpg or .webp")
    assert cli_run("generate", run_dir, "-n", "4", "-o", tmp_path / "g.jpg").exit_code == 0
    with Image.open(tmp_path / "g.jpg") as img:
        assert img.format == "JPEG"
    (run_dir / "export" / "image.safetensors").write_bytes(b"xx")
    assert_one_line_error(cli_run("generate", run_dir, "-o", tmp_path / "g.png"), "corrupt")
    assert not (tmp_path / "g.png").exists()
    assert not list(tmp_path.glob(".g.*")), "no temporary file is left behind"


def test_a_plugin_adds_an_option_to_eval_and_its_value_reaches_the_metric_hook(cli_run, tmp_path):
    import click

    import mmgan
    from mmgan.cli.commands import _add_plugin_options, eval_command
    from mmgan.errors import PluginError
    from mmgan.testing import plugin_registered

    seen = {}

    class Brightness:
        @mmgan.hookimpl
        def mmgan_command_options(self, command, add):
            if command == "eval":
                add(click.Option(["--brightness-target"], type=float))

        @mmgan.hookimpl
        def mmgan_evaluate(self, ctx):
            seen.update(ctx.options)
            return None

    class Clash:
        @mmgan.hookimpl
        def mmgan_command_options(self, command, add):
            add(click.Option(["--seed"], type=int))

    # eval as core defines it: without the options installed plugins added when the CLI was built
    core_params = [p for p in eval_command.params if "--inception-weights" not in getattr(p, "opts", [])]
    command = click.Command("eval", params=list(core_params), callback=eval_command.callback)
    with plugin_registered(Brightness(), name="brightness") as plugin:
        from mmgan.contract.manager import get_plugin_manager

        _add_plugin_options(command, get_plugin_manager())
        assert "--brightness-target" in [o for p in command.params for o in getattr(p, "opts", [])]
        run = tmp_path / "run"
        assert cli_run("run", "--plugin", "image", "--out", run, "--steps", 1, "--batch-size", 4, "--no-progress",
                       *[a for s in TINY for a in ("--set", s)]).exit_code == 0
        from click.testing import CliRunner

        result = CliRunner().invoke(command, [str(run), "-n", "130", "--brightness-target", "0.5",
                                              "--out", str(tmp_path / "e.json")], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert seen == {"brightness_target": 0.5}
        assert plugin is not None
    with plugin_registered(Clash(), name="clash"), pytest.raises(PluginError, match="--seed"):
        _add_plugin_options(click.Command("eval", params=list(core_params)), get_plugin_manager())


@pytest.mark.slow
def test_quickstart_sets_up_an_environment_and_runs_the_default_job(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    # this test's environment stands in for the one the script would create (creating one installs torch:
    # minutes); everything after that is what a newcomer runs
    venv = Path(sys.executable).parent.parent
    env = {**os.environ, "MMGAN_VENV": str(venv)}
    args = ["--steps", "2", "--batch-size", "4", "--out", str(tmp_path / "run"), "--no-progress",
            *[a for s in TINY for a in ("--set", s)]]
    result = subprocess.run(["bash", str(root / "bin" / "quickstart"), *args], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is already installed" in result.stdout
    assert "image 0.1.0" in result.stdout  # `mmgan plugins` ran
    assert (tmp_path / "run" / "export" / "image.safetensors").is_file()
