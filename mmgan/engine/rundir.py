"""The files of a run directory that the loop writes: config.toml and metrics.jsonl (rank 0 only)."""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import shutil
import socket
from pathlib import Path
from typing import IO

from mmgan import checkpoint
from mmgan.config import RunConfig, to_toml
from mmgan.errors import CheckpointError
from mmgan.files import atomic_path, remove_temporaries, writing

log = logging.getLogger("mmgan")


class RunDirectory:
    """``runs/<name>/``: the resolved config and the one-JSON-object-per-line metrics log."""

    LOCK_FILE = ".lock"
    FALLBACK_LOCK_FILE = ".lock.held"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock: IO[str] | None = None
        self._lock_path: Path | None = None
        self.created = False  # whether lock() made the directory

    def lock(self) -> None:
        """Hold the run directory for this process (rank 0 of a run) until :meth:`unlock`: a second
        ``mmgan run`` on the same directory, started or resumed, is refused instead of interleaving its
        files with this one's. The lock is the operating system's (``flock``), so it goes with the
        process, even after ``kill -9``. On a filesystem without working locks (some network and FUSE
        mounts) it is a lock file created exclusively instead, naming host and pid; one left by a
        process that is gone from this host is stale and taken over."""
        lock_path = self.path / self.LOCK_FILE
        if lock_path.is_symlink():  # whoever can write into the run directory must not make us write elsewhere
            raise CheckpointError(f"{lock_path} is a symbolic link (to {os.readlink(lock_path)}); mmgan does not "
                                  "follow it: remove the link and run again")
        try:
            self.created = self.created or not self.path.exists()
            self.path.mkdir(parents=True, exist_ok=True)
            # O_NOFOLLOW: a link put there between the check and the open fails instead of being followed
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o644)
            handle = os.fdopen(fd, "a+", encoding="utf-8")
        except OSError as exc:
            raise CheckpointError(f"cannot create run directory {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            handle.close()
            raise CheckpointError(f"run directory {self.path} is in use by another mmgan process ({owner}); "
                                  "wait for it, or choose another --out") from None
        except OSError as exc:  # ENOLCK, EOPNOTSUPP...: no OS locks on this filesystem
            handle.close()
            log.debug("flock on %s failed (%s): using a lock file", self.path, exc)
            self._lock_file()
            return
        handle.seek(0)
        handle.truncate()
        handle.write(holder())
        handle.flush()
        self._lock = handle

    def _lock_file(self) -> None:
        path = self.path / self.FALLBACK_LOCK_FILE
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = path.read_text(encoding="utf-8", errors="replace").strip() if path.exists() else ""
                if stale(owner):
                    log.warning("removing the stale lock %s of %s (that process is gone)", path, owner)
                    path.unlink(missing_ok=True)
                    continue
                raise CheckpointError(f"run directory {self.path} is in use by another mmgan process "
                                      f"({owner or '?'}); wait for it, choose another --out, or delete {path} "
                                      "if that process is gone") from None
            except OSError as exc:
                raise CheckpointError(f"cannot lock run directory {self.path}: {exc.strerror or exc}") from None
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(holder())
            self._lock_path = path
            return

    def unlock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None
        if self._lock_path is not None:
            self._lock_path.unlink(missing_ok=True)
            self._lock_path = None

    def discard_if_unused(self) -> None:
        """After :meth:`unlock`: remove the directory :meth:`lock` made if the run wrote nothing into it but its
        lock and its trackers' start-up files, so a run that failed to start leaves nothing behind."""
        if not self.created:
            return
        try:
            if not {p.name for p in self.path.iterdir()} <= {self.LOCK_FILE, "trackers"}:
                return
            (self.path / self.LOCK_FILE).unlink(missing_ok=True)
            shutil.rmtree(self.path / "trackers", ignore_errors=True)
            self.path.rmdir()
        except OSError as exc:  # the run's own error matters more than this tidying
            log.debug("left %s in place: %s", self.path, exc)

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    # what a run writes in its directory (``--overwrite`` removes these and nothing else)
    RUN_FILES = ("checkpoints", "samples", "export", "metrics.jsonl", "config.toml", "eval.json", "run.json",
                 "trackers")

    def holds_run(self) -> bool:
        return self.metrics_path.exists() or (self.path / "checkpoints").is_dir()

    def refuse_existing_run(self) -> None:
        """A fresh run must not write into another run's directory."""
        if self.holds_run():
            steps = checkpoint.checkpoint_dirs(self.path)
            where = (f"its last checkpoint is step {int(steps[-1].name.removeprefix('step_'))}" if steps
                     else "it has no checkpoint yet, so --resume starts it again from step 0")
            raise CheckpointError(f"{self.path} already holds a run ({where}); continue it with mmgan run --resume "
                                  f"{self.path}, start it over with --overwrite, or choose another --out")

    def overwrite(self) -> list[Path]:
        """Remove the files of the run in this directory (``RUN_FILES``: checkpoints, samples, export,
        metrics, config, eval.json, run.json, trackers), nothing else; refused while another process trains
        in it. Returns what was removed."""
        self.lock()
        try:
            removed = []
            for name in self.RUN_FILES:
                target = self.path / name
                with writing(target):
                    if target.is_symlink():  # a link the user made: remove the link, never what it points to
                        target.unlink()
                    elif target.is_dir():
                        shutil.rmtree(target)
                    elif target.exists():
                        target.unlink()
                    else:
                        continue
                removed.append(target)
            return removed
        finally:
            self.unlock()

    def remove_leftovers(self) -> None:
        """Delete what a killed or failed run left half-written: checkpoint staging directories and the
        temporaries of atomic writes (config, metrics, exports)."""
        checkpoint.remove_staging(self.path)
        for directory in (self.path, self.path / "export", self.path / "export" / checkpoint.BEST_DIR):
            remove_temporaries(directory)

    def write_config(self, config: RunConfig) -> None:
        with atomic_path(self.path / "config.toml") as tmp:
            tmp.write_text(to_toml(config), encoding="utf-8")

    def append_metrics(self, record: dict[str, float]) -> None:
        with writing(self.metrics_path):
            self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
            with self.metrics_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def truncate_metrics(self, after: int) -> None:
        """Drop records past the resumed step, so a resumed run's log reads like an unbroken run's."""
        if not self.metrics_path.exists():
            return
        kept = [line for line in self.metrics_path.read_text(encoding="utf-8").splitlines()
                if logged_step(line) <= after]
        with atomic_path(self.metrics_path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def holder() -> str:
    """Who holds a lock: ``pid N on HOST``."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


def stale(owner: str) -> bool:
    """Whether a lock file's ``pid N on HOST`` names a process of this host that no longer exists."""
    parts = owner.split()
    if len(parts) != 4 or parts[0] != "pid" or parts[2] != "on" or not parts[1].isdigit():
        return False  # not ours to judge: refuse, naming what it says
    if parts[3] != socket.gethostname():
        return False  # another host's process: it cannot be checked from here
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


def logged_step(line: str) -> float:
    """The step of a metrics.jsonl line; infinity for a line a crash cut short (it is dropped)."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf
