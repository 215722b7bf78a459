"""The files of a run directory that the loop writes: config.toml and metrics.jsonl (rank 0 only)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from mmgan import checkpoint
from mmgan.config import RunConfig, to_toml
from mmgan.errors import CheckpointError
from mmgan.files import atomic_path


class RunDirectory:
    """``runs/<name>/``: the resolved config and the one-JSON-object-per-line metrics log."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

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
