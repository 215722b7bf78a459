"""A training callback (registered with ``mmgan_register_callbacks``): hears the run's steps and evaluations,
and keeps state that checkpoints save and resume restores exactly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class TrainingCallback:
    """Override what you need; every method has a default that does nothing.

    ``name`` keys the callback's state in checkpoints: keep it stable and unique (your plugin's name).
    Callbacks run on every process; only the main process writes files. Values are plain Python numbers.
    """

    name: str = ""

    def on_step_end(self, step: int, losses: Mapping[str, float]) -> None:
        """After training step ``step`` (1-based: the number of steps done), on the steps that log
        (``train.log_every``), with that step's losses by ``<modality>/<kind>/<term>``."""

    def on_evaluation(self, step: int, metrics: Mapping[str, Any]) -> None:
        """After a periodic evaluation at ``step`` (on the main process, which evaluates), with its metrics by
        ``<modality>/eval/<name>``."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state saved in every checkpoint (an empty dict: nothing to save)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """The state :meth:`state_dict` returned at the checkpoint a run resumes from."""
