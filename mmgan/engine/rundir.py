"""The files of a run directory that the loop writes: config.toml and metrics.jsonl (rank 0 only)."""

from __future__ import annotations

import fcntl
import json
import math
import os
from pathlib import Path
from typing import IO

from mmgan import checkpoint
from mmgan.config import RunConfig, to_toml
from mmgan.errors import CheckpointError
from mmgan.files import atomic_path


class RunDirectory:
    """``runs/<name>/``: the resolved config and the one-JSON-object-per-line metrics log."""

    LOCK_FILE = ".lock"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock: IO[str] | None = None

    def lock(self) -> None:
        """Hold the run directory for this process (rank 0 of a run) until :meth:`unlock`: a second
        ``mmgan run`` on the same directory, started or resumed, is refused instead of interleaving its
        files with this one's. The lock is the operating system's (``flock``): it goes with the process."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            handle = open(self.path / self.LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 - held open
        except OSError as exc:
            raise CheckpointError(f"cannot create run directory {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            handle.close()
            raise CheckpointError(f"run directory {self.path} is in use by another mmgan process (pid {owner}); "
                                  "wait for it, or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock = handle

    def unlock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def refuse_existing_run(self) -> None:
        """A fresh run must not write into another run's directory."""
        if self.metrics_path.exists() or checkpoint.checkpoint_dirs(self.path):
            raise CheckpointError(f"{self.path} already holds a run; resume it (mmgan run --resume "
                                  f"{self.path}) or choose another --out")

    def write_config(self, config: RunConfig) -> None:
        with atomic_path(self.path / "config.toml") as tmp:
            tmp.write_text(to_toml(config), encoding="utf-8")

    def append_metrics(self, record: dict[str, float]) -> None:
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


def logged_step(line: str) -> float:
    """The step of a metrics.jsonl line; infinity for a line a crash cut short (it is dropped)."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf
