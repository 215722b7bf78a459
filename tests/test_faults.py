"""The fault catalogue (../shared/faults.md, docs/reliability.md): signals, full disks, locks, leftovers.

Real signals go to real `mmgan run` processes; a full disk is a small tmpfs where this machine lets us
mount one, and a monkeypatched writer everywhere.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY, assert_one_line_error, read_metrics, tiny_args

from mmgan import checkpoint
from mmgan.engine import rundir
from mmgan.engine.rundir import RunDirectory
from mmgan.engine.stop import StopRequests
from mmgan.errors import CheckpointError, StorageError
from mmgan.files import atomic_path, check_writable

ROOT = Path(__file__).resolve().parent.parent


def mmgan_process(*args: str | Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"),
                                                          os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", "from mmgan.cli.commands import main; main()", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for_step(run: Path, step: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if (run / "metrics.jsonl").exists() and len(read_metrics(run)) >= step:
            return
        time.sleep(0.1)
    raise AssertionError(f"no step {step} in {run} within {timeout} s")


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_at_a_step_boundary_with_a_checkpoint(cli_run, tmp_path, signum, code):
    """Faults 2, 38, 39: the first SIGTERM/SIGINT writes a checkpoint, says how to continue, exits 143/130."""
    run = tmp_path / "run"
    process = mmgan_process("run", "--plugin", "image", *tiny_args(run, steps=100_000),
                            "--set", "train.checkpoint_every=100000", "--set", "train.sample_every=100000")
    wait_for_step(run, 3, process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert "Traceback" not in err
    assert f"stopped by {signal.Signals(signum).name} at step" in err and f"mmgan run --resume {run}" in err
    stopped = int(err.split(" at step ")[1].split(",")[0])
    assert checkpoint.checkpoint_dirs(run)[-1].name == f"step_{stopped:06d}"
    assert not list((run / "checkpoints").glob(".*partial"))
    result = cli_run("run", "--resume", run, "--steps", str(stopped + 2))
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in read_metrics(run) if "image/d/adv" in r][-3:] == [stopped, stopped + 1, stopped + 2]


def test_a_second_ctrl_c_stops_at_once():
    requests = StopRequests()
    requests.handle(signal.SIGINT, None)
    assert requests.signum == signal.SIGINT
    requests.handle(signal.SIGTERM, None)  # a later SIGTERM does not hurry it
    with pytest.raises(KeyboardInterrupt):
        requests.handle(signal.SIGINT, None)


def test_a_checkpoint_that_does_not_fit_is_refused_before_anything_is_written(cli_run, tmp_path, monkeypatch):
    """Faults 41, 42: a one-line error, the previous checkpoint intact, no staging left."""
    run = tmp_path / "run"
    assert cli_run("run", "--plugin", "image", *tiny_args(run, steps=2)).exit_code == 0
    export = (run / "export" / "image.safetensors").read_bytes()
    monkeypatch.setattr("mmgan.engine.resume.free_bytes", lambda path: 10_000)
    result = cli_run("run", "--resume", run, "--steps", "4")
    assert_one_line_error(result, "not enough space for the checkpoint of step 4", "MiB free",
                          "checkpoint of step 2 is intact", f"mmgan run --resume {run}")
    assert [p.name for p in checkpoint.checkpoint_dirs(run)] == ["step_000002"]
    assert not list((run / "checkpoints").glob(".*partial"))
    assert (run / "export" / "image.safetensors").read_bytes() == export


def test_a_checkpoint_write_that_fails_removes_its_staging(cli_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert cli_run("run", "--plugin", "image", *tiny_args(run, steps=2)).exit_code == 0

    def full_disk(self, output_dir, **kwargs):
        Path(output_dir).mkdir(parents=True)
        (Path(output_dir) / "model.safetensors").write_bytes(b"\0" * 100)
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed\nmore lines")

    monkeypatch.setattr("accelerate.Accelerator.save_state", full_disk)
    result = cli_run("run", "--resume", run, "--steps", "4")
    assert_one_line_error(result, "cannot write", ".step_000004.partial", "RuntimeError", "step 2 is intact")
    assert not list((run / "checkpoints").glob(".*partial"))
    monkeypatch.undo()
    assert cli_run("run", "--resume", run, "--steps", "4").exit_code == 0


def mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def test_a_full_disk_is_one_line_and_resume_cleans_up(cli_run, tmp_path):
    """Faults 41 and 42 on a real full filesystem (a 3 MB tmpfs)."""
    disk = tmp_path / "disk"
    if not mount_tmpfs(disk, "3m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        run = disk / "run"
        assert cli_run("run", "--plugin", "image", *tiny_args(run, steps=2)).exit_code == 0
        filler = disk / "filler"
        free = shutil.disk_usage(disk).free
        filler.write_bytes(b"\0" * (free - 64 * 1024))  # leave 64 KiB: less than a checkpoint
        result = cli_run("run", "--resume", run, "--steps", "4")
        assert_one_line_error(result, "step 2 is intact")
        assert not list((run / "checkpoints").glob(".*partial"))
        filler.unlink()
        assert cli_run("run", "--resume", run, "--steps", "4").exit_code == 0
        assert checkpoint.checkpoint_dirs(run)[-1].name == "step_000004"
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_atomic_writes_fail_as_one_error_naming_the_file_and_leave_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out" / "report.json"
    target.parent.mkdir()
    target.write_text("old")

    def enospc(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    expected = r"cannot write .*report.json: No space left on device; free some space"
    with pytest.raises(StorageError, match=expected), atomic_path(target) as tmp:
        tmp.write_text("new half")
        monkeypatch.setattr(os, "replace", enospc)
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]


def test_outputs_are_checked_before_the_work(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="is not a directory"):
        check_writable(tmp_path / "file" / "grid.png")
    check_writable(tmp_path / "new" / "dir" / "grid.png")  # created later: fine


def test_stale_temporaries_and_staging_are_removed_when_a_run_continues(cli_run, tmp_path):
    """Fault 37: the 0-byte .tmp a kill during export left, and a half-written checkpoint."""
    run = tmp_path / "run"
    assert cli_run("run", "--plugin", "image", *tiny_args(run, steps=1)).exit_code == 0
    stray = run / "export" / ".image.safetensors.0123456789ab.tmp"
    stray.write_bytes(b"")
    staging = checkpoint.staging_dir(run, 2)
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(b"\0" * 10)
    assert cli_run("run", "--resume", run, "--steps", "2").exit_code == 0
    assert not stray.exists() and not staging.exists()


def test_unreadable_random_states_are_an_error_and_missing_ones_a_logged_fallback(cli_run, tmp_path, caplog):
    """Fault 30: Accelerate would go on silently without them."""
    run = tmp_path / "run"
    assert cli_run("run", "--plugin", "image", *tiny_args(run, steps=1)).exit_code == 0
    states = checkpoint.checkpoint_dirs(run)[-1] / "random_states_0.pkl"
    states.write_bytes(states.read_bytes()[:20])
    assert_one_line_error(cli_run("run", "--resume", run, "--steps", "2"), "cannot read random states",
                          "random_states_0.pkl", "delete the file")
    states.unlink()
    result = cli_run("run", "--resume", run, "--steps", "2")
    assert result.exit_code == 0, result.output
    assert "random_states_0.pkl is missing: resuming with fresh" in caplog.text


def test_overwrite_removes_the_run_and_nothing_else(cli_run, tmp_path):
    run = tmp_path / "run"
    assert cli_run("run", "--plugin", "image", *tiny_args(run, steps=1)).exit_code == 0
    (run / "notes.txt").write_text("mine")
    result = cli_run("run", "--plugin", "image", *tiny_args(run, steps=2), "--overwrite", "--seed", "5")
    assert result.exit_code == 0, result.output
    assert (run / "notes.txt").read_text() == "mine"
    assert [r["step"] for r in read_metrics(run) if "image/d/adv" in r] == [1, 2]
    assert 'seed = 5' in (run / "config.toml").read_text()
    assert_one_line_error(cli_run("run", "--resume", run, "--overwrite"), "give one of them")


def test_lock_file_fallback_where_flock_does_not_work(tmp_path, monkeypatch):
    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(rundir.fcntl, "flock", no_locks)
    first, second = RunDirectory(tmp_path / "run"), RunDirectory(tmp_path / "run")
    first.lock()
    with pytest.raises(CheckpointError, match=f"in use by another mmgan process \\(pid {os.getpid()} on "):
        second.lock()
    first.unlock()
    second.lock()  # released: free again
    second.unlock()
    # a lock file left by a process that is gone from this host is stale: taken over, with a warning
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "run" / RunDirectory.FALLBACK_LOCK_FILE).write_text(f"pid {dead.pid} on {rundir.socket.gethostname()}")
    first.lock()
    first.unlock()
    # another host's lock cannot be checked: refused, saying how to clear it
    (tmp_path / "run" / RunDirectory.FALLBACK_LOCK_FILE).write_text("pid 1 on some-other-host")
    with pytest.raises(CheckpointError, match="pid 1 on some-other-host.*delete .*lock.held"):
        first.lock()


def test_unexpected_exceptions_are_one_line_unless_verbose(cli_run, tmp_path, monkeypatch):
    """The CLI's last line of defence: one line with a hint; -v lets the traceback through."""
    run = tmp_path / "run"
    assert cli_run("run", "--plugin", "image", *tiny_args(run, steps=1)).exit_code == 0

    def broken(*args, **kwargs):
        raise RuntimeError("something mmgan did not expect\nsecond line")

    monkeypatch.setattr("mmgan.evaluation.scoring.evaluate_run", broken)
    assert_one_line_error(cli_run("eval", run, "-n", "10"), "RuntimeError: something mmgan did not expect",
                          "rerun with -v")
    with pytest.raises(RuntimeError, match="did not expect"):
        cli_run("-v", "eval", run, "-n", "10")


def test_eval_checks_device_and_output_first_and_never_loses_its_metrics(cli_run, tmp_path, monkeypatch):
    """Faults 47, 48."""
    run = tmp_path / "run"
    assert cli_run("run", "--plugin", "image", *tiny_args(run, steps=1)).exit_code == 0
    import torch

    if not torch.cuda.is_available():
        assert_one_line_error(cli_run("eval", run, "-n", "10", "--device", "cuda"), "--device cuda", "--device cpu")
    assert_one_line_error(cli_run("eval", run, "-n", "10", "--device", "tpu9"), "--device")
    (tmp_path / "file").write_text("x")
    assert_one_line_error(cli_run("eval", run, "-n", "10", "--out", tmp_path / "file" / "e.json"),
                          "not a directory")

    def read_only(path, report):
        raise StorageError(f"cannot write {path}: Read-only file system; choose a writable location")

    monkeypatch.setattr("mmgan.evaluation.scoring.write_report", read_only)
    result = cli_run("eval", run, "-n", "130")
    assert_one_line_error(result, "Read-only file system", "printed above as JSON")
    printed = json.loads(next(line for line in result.output.splitlines() if line.startswith("{")))
    assert "swd" in printed["metrics"]


def test_generate_checks_its_output_before_sampling(cli_run, tmp_path):
    run = tmp_path / "run"
    assert cli_run("run", "--plugin", "image", *tiny_args(run, steps=1)).exit_code == 0
    (tmp_path / "file").write_text("x")
    assert_one_line_error(cli_run("generate", run, "-o", tmp_path / "file" / "g.png"), "not a directory")


def test_out_that_cannot_be_created_is_one_line(cli_run, tmp_path):
    """Fault 11."""
    assert_one_line_error(cli_run("run", "--plugin", "image", "--out", "/proc/mmgan-test", "--steps", "1",
                                  *[a for s in TINY for a in ("--set", s)]), "/proc/mmgan-test")


def test_the_same_modality_given_data_twice_is_an_error(cli_run, tmp_path):
    """Fault 9."""
    assert_one_line_error(cli_run("run", "--plugin", "image", "--data", "image=A", "--data", "image=B",
                                  "--out", tmp_path / "r"), "--data given twice for image", "'image=A'", "'image=B'")
    assert not (tmp_path / "r").exists()


def test_a_lock_file_that_is_a_symbolic_link_is_refused_and_its_target_untouched(cli_run, tmp_path):
    # faults row 91: anyone who can write into a run directory could make mmgan overwrite any file of the user
    run, target = tmp_path / "run", tmp_path / "precious.txt"
    run.mkdir()
    target.write_text("keep me\n")
    (run / ".lock").symlink_to(target)
    result = cli_run("run", "--plugin", "image", *tiny_args(run, steps=1))
    assert_one_line_error(result, ".lock", "symbolic link", "precious.txt")
    assert target.read_text() == "keep me\n"
    assert not (run / "config.toml").exists()


def test_no_command_writes_over_the_run_s_own_files(cli_run, tmp_path):
    # faults row 86: eval --out RUN/config.toml destroyed the run's config (resume: not valid TOML)
    run = tmp_path / "run"
    assert cli_run("run", "--plugin", "image", *tiny_args(run, steps=2)).exit_code == 0
    config = (run / "config.toml").read_bytes()
    assert_one_line_error(cli_run("eval", run, "-n", "130", "--out", run / "config.toml"),
                          "config.toml", "one of the run's own files")
    assert (run / "config.toml").read_bytes() == config
    sample = run / "samples" / "image" / "step_000002.png"
    before = sample.read_bytes()
    assert_one_line_error(cli_run("generate", run, "-n", "4", "-o", sample), "step_000002.png", "samples")
    assert sample.read_bytes() == before
    assert cli_run("generate", run, "-n", "4", "-o", run / "mine.png").exit_code == 0  # a new file of yours: fine


@pytest.mark.slow
def test_vocode_refuses_to_write_over_its_input(cli_run, tmp_path):
    # faults row 82: vocode in.wav -o in.wav overwrote its input
    import numpy as np
    import scipy.io.wavfile
    from conftest import SPEECH_TINY, TINY_CORE

    run = tmp_path / "run"
    settings = [a for s in (*TINY_CORE, *SPEECH_TINY) for a in ("--set", s)]
    result = cli_run("run", "--plugin", "speech", "--out", run, "--steps", "1", "--batch-size", "2", "--no-progress",
                     *settings)
    assert result.exit_code == 0, result.output
    wav = tmp_path / "in.wav"
    scipy.io.wavfile.write(wav, 22050, (0.1 * np.sin(np.arange(22050) * 0.05)).astype(np.float32))
    before = wav.read_bytes()
    assert_one_line_error(cli_run("vocode", run, wav, "-o", wav), "in.wav", "is the input")
    assert wav.read_bytes() == before


def test_outputs_that_cannot_be_written_are_refused_before_the_work(cli_run, tmp_path):
    # faults row 85: generate sampled and eval measured for seconds, then failed at the write
    run = tmp_path / "run"
    assert cli_run("run", "--plugin", "image", *tiny_args(run, steps=1)).exit_code == 0
    # the messages of the checks made before the work ("the report is printed above" would mean after it)
    result = cli_run("eval", run, "-n", "130", "--out", tmp_path)
    assert_one_line_error(result, "is a directory")
    assert "printed above" not in result.output
    if Path("/proc").is_dir():  # permission bits say writable; a new file is still refused
        assert_one_line_error(cli_run("generate", run, "-n", "4", "-o", "/proc/x.png"), "/proc", "refuses new files")


def test_resume_refuses_trunk_flags_the_run_was_not_started_with(cli_run, tmp_path):
    # faults row 76: recorded in config.toml, but the trunk was not loaded, and it froze mid-run
    run, other = tmp_path / "run", tmp_path / "other"
    for path in (run, other):
        assert cli_run("run", "--plugin", "image", *tiny_args(path, steps=1)).exit_code == 0
    config = (run / "config.toml").read_text()
    result = cli_run("run", "--resume", run, "--init-trunk", other, "--freeze-trunk", "--steps", "2")
    assert_one_line_error(result, "--init-trunk", "without --init-trunk", "--out")
    assert (run / "config.toml").read_text() == config


def test_a_run_directory_whose_name_is_not_utf8_is_refused_before_anything_is_written(cli_run, tmp_path):
    # faults row 63: the run trained, then resume, generate, eval, init-trunk and report all failed on it
    out = os.fsdecode(os.fsencode(tmp_path) + b"/new\xfeout")
    result = cli_run("run", "--plugin", "image", *tiny_args(Path(out), steps=1))
    assert_one_line_error(result, "not valid UTF-8")
    assert not os.path.exists(out)


def test_a_removed_export_checksum_is_a_warning_and_deep_nesting_one_line(cli_run, tmp_path, caplog):
    # faults row 89: a removed checksum loaded silently; JSON nested 100k deep was a catch-all RecursionError
    import logging

    run = tmp_path / "run"
    assert cli_run("run", "--plugin", "image", *tiny_args(run, steps=1)).exit_code == 0
    meta = run / "export" / "image.json"
    config = json.loads(meta.read_text())
    config.pop("weights_sha256")
    meta.write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING, logger="mmgan"):
        assert cli_run("generate", run, "--last", "-n", "4", "-o", tmp_path / "g.png").exit_code == 0
    assert any("no checksum" in r.getMessage() and "unchecked" in r.getMessage() for r in caplog.records)
    meta.write_text("[" * 100_000 + "]" * 100_000)
    assert_one_line_error(cli_run("generate", run, "--last", "-n", "4", "-o", tmp_path / "h.png"), "nested too deep")
