"""The collapse watchdog: a run whose GAN has failed says so while it trains, and can stop or roll back.

Three signals per modality, each judged over a sliding window of ``train.collapse_window`` steps:

- **D's loss pinned**: past the modality's ``adversarial_start``, the median of D's adversarial loss in the
  window at or under the level at which D has won (``AdversarialLoss.collapse_floor``: the non-saturating
  and least-squares losses have one; hinge and relativistic losses sit near 0 legitimately and have none),
  within 10% of its chance level (``chance_level``: D tells reals from fakes no better than a coin), or
  not moving at all (a dead D, any loss);
- **G's loss exploding**: the median of G's adversarial loss in the window above
  ``AdversarialLoss.explosion_level`` (where the loss declares one) and above 4x its median over the
  first window of adversarial training;
- **diversity falling**: every ``watch_every`` steps the live generator makes a fixed batch from inputs of
  the watchdog's own (noise from its own RNG, or the same real samples every time; never the training
  noise, so watching changes no result), and the spread of its samples (mean pairwise distance in the
  modality's ``features``) is divided by the spread of the real samples. Below
  ``train.collapse_diversity`` at every check of a window: collapse. Logged as ``<modality>/watch/diversity``.

A signal found raises one warning whose text says "collapse", is recorded in ``run.json`` (``collapse``) and
marked on the report's curves; ``train.on_collapse`` then decides: ``warn`` trains on, ``stop`` ends the
run with its last checkpoint, ``rollback`` returns to the newest checkpoint from before the onset (the
watchdog keeps it from rotation) and trains on with both learning rates halved (saved in checkpoints, so a
resume keeps them). Every process reaches the same verdict: rank 0 judges and broadcasts it.
"""

from __future__ import annotations

import logging
import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

log = logging.getLogger("mmgan")

MODES = ("off", "warn", "stop", "rollback")
SIGNALS = ("d_pinned", "g_exploding", "diversity")
#: a G loss counts as exploding above this many times its median over the first window of adversarial training
EXPLOSION_FACTOR = 4.0
#: D's loss within this share of its chance level (``AdversarialLoss.chance_level``) is pinned there
CHANCE_BAND = 0.1
#: at most this many rollbacks in one run; the next collapse stops it
MAX_ROLLBACKS = 3


@dataclass
class Collapse:
    """One signal found: which modality, what, from which step (onset) and when it was found."""

    modality: str
    signal: str
    onset: int
    step: int
    value: float
    threshold: float
    action: str = "warn"

    def line(self) -> str:
        what = {"d_pinned": "D's adversarial loss pinned at {value:.4g} (level {threshold:.4g})",
                "g_exploding": "G's adversarial loss exploding at {value:.4g} (level {threshold:.4g})",
                "diversity": "sample diversity {value:.3g} of the real data's (level {threshold:.3g})"}[self.signal]
        found = what.format(value=self.value, threshold=self.threshold)
        return f"collapse of {self.modality} at step {self.step}: {found} since step {self.onset}"


def spread(features: torch.Tensor) -> float:
    """The mean pairwise Euclidean distance of the rows of ``features`` (N, d)."""
    x = features.detach().double().flatten(1)
    n = x.shape[0]
    if n < 2:
        return 0.0
    return float(torch.cdist(x, x).sum() / (n * (n - 1)))


class _Window:
    """(step, value) observations of the last ``length`` steps."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.items: deque[tuple[int, float]] = deque()

    def add(self, step: int, value: float) -> None:
        self.items.append((step, value))
        while self.items and self.items[0][0] <= step - self.length:
            self.items.popleft()

    def full(self, step: int, every: int) -> bool:
        """Whether the observations span the window (its first one at most ``every`` steps after its start)."""
        return bool(self.items) and self.items[0][0] <= step - self.length + every and len(self.items) >= 3

    def median(self) -> float:
        return statistics.median(v for _, v in self.items)

    def values(self) -> list[float]:
        return [v for _, v in self.items]


class CollapseWatch:
    """The watchdog of one run: fed the logged losses and the diversity checks, it returns the collapses found.

    ``floors``/``explosions``: each modality's D floor and G explosion level (None: the loss has none);
    ``starts``: each modality's ``adversarial_start``. State (the rollbacks, the learning-rate scale, what was
    found) is saved in checkpoints.
    """

    def __init__(self, mode: str, window: int, diversity_level: float, log_every: int, watch_every: int,
                 starts: Mapping[str, int], floors: Mapping[str, float | None],
                 explosions: Mapping[str, float | None], chances: Mapping[str, float | None] | None = None) -> None:
        self.mode, self.window, self.diversity_level = mode, window, diversity_level
        self.log_every, self.watch_every = log_every, watch_every
        self.starts, self.floors, self.explosions = dict(starts), dict(floors), dict(explosions)
        self.chances = dict(chances or {})
        self.d_loss = {m: _Window(window) for m in starts}
        self.g_loss = {m: _Window(window) for m in starts}
        self.diversity = {m: _Window(window) for m in starts}
        self.g_reference: dict[str, float] = {}
        self._first_g: dict[str, list[float]] = {m: [] for m in starts}
        self.found: list[dict[str, Any]] = []
        self.rollbacks: list[dict[str, Any]] = []
        self.lr_scale = 1.0
        self.active: set[tuple[str, str]] = set()  # signals found and not yet cleared: one warning each

    # ---- observations ------------------------------------------------------------------------------

    def observe_losses(self, step: int, record: Mapping[str, float]) -> None:
        """A logged step's losses (averaged over processes), ``<modality>/<d|g>/adv``."""
        for m in self.starts:
            if step <= self.starts[m]:  # no D before the adversarial start
                continue
            d, g = record.get(f"{m}/d/adv"), record.get(f"{m}/g/adv")
            if d is not None:
                self.d_loss[m].add(step, float(d))
            if g is not None:
                self.g_loss[m].add(step, float(g))
                first = self._first_g[m]
                if m not in self.g_reference and first is not None:
                    first.append(float(g))
                    if step - self.starts[m] >= self.window:
                        self.g_reference[m] = statistics.median(first)
                        self._first_g[m] = None

    def observe_diversity(self, step: int, modality: str, ratio: float) -> None:
        self.diversity[modality].add(step, ratio)

    # ---- verdicts -----------------------------------------------------------------------------------

    def check(self, step: int) -> list[Collapse]:
        """The signals that hold at ``step`` and were not already reported (each is reported once, until it
        clears)."""
        new = []
        for m in self.starts:
            for signal, judged in (("d_pinned", self._d_pinned(m, step)), ("g_exploding", self._g_exploding(m, step)),
                                   ("diversity", self._diverse(m, step))):
                key = (m, signal)
                if judged is None:
                    self.active.discard(key)
                    continue
                if key in self.active:
                    continue
                self.active.add(key)
                value, threshold, onset = judged
                new.append(Collapse(m, signal, onset, step, value, threshold, self.mode))
        return new

    def _onset(self, window: _Window) -> int:
        """Where a signal judged on the window's median began, at the latest: the window's start (the step
        before its first observation)."""
        return window.items[0][0] - self.log_every

    def _d_pinned(self, m: str, step: int) -> tuple[float, float, int] | None:
        w = self.d_loss[m]
        if not w.full(step, self.log_every):
            return None
        median, values = w.median(), w.values()
        floor = self.floors.get(m)
        if floor is not None and median <= floor:
            return median, floor, self._onset(w)
        if max(values) - min(values) <= 1e-6 * max(1.0, abs(median)):  # not moving: a dead D
            return median, median, self._onset(w)
        chance = self.chances.get(m)
        if chance is not None and abs(median - chance) <= CHANCE_BAND * chance:  # D tells nothing apart
            return median, chance, self._onset(w)
        return None

    def _g_exploding(self, m: str, step: int) -> tuple[float, float, int] | None:
        w, level = self.g_loss[m], self.explosions.get(m)
        if level is None or not w.full(step, self.log_every):
            return None
        reference = self.g_reference.get(m)
        threshold = max(level, EXPLOSION_FACTOR * abs(reference)) if reference is not None else level
        median = w.median()
        if median <= threshold:
            return None
        return median, threshold, self._onset(w)

    def _diverse(self, m: str, step: int) -> tuple[float, float, int] | None:
        w = self.diversity[m]
        # a generator is judged once it has trained a window adversarially: GANs start with little diversity
        if step < self.starts[m] + 2 * self.window or not w.full(step, self.watch_every) \
                or max(w.values()) >= self.diversity_level:
            return None
        return max(w.values()), self.diversity_level, w.items[0][0] - self.watch_every

    def reset(self) -> None:
        """Forget the observations (after a rollback: they are of the run that collapsed)."""
        for windows in (self.d_loss, self.g_loss, self.diversity):
            for window in windows.values():
                window.items.clear()
        self.active.clear()

    def record(self, found: Collapse) -> None:
        self.found.append(asdict(found))

    # ---- state --------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"found": self.found, "rollbacks": self.rollbacks, "lr_scale": self.lr_scale,
                "g_reference": self.g_reference}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.found = list(state.get("found", []))
        self.rollbacks = list(state.get("rollbacks", []))
        self.lr_scale = float(state.get("lr_scale", 1.0))
        self.g_reference = {k: float(v) for k, v in state.get("g_reference", {}).items()}
        for m in self.g_reference:
            self._first_g[m] = None
