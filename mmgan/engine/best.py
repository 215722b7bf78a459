"""Best checkpoint by metric: GANs often get worse after their best step, so a run keeps, per modality,
the export that scored best on ``<modality>.select_by`` beside the last one."""

from __future__ import annotations

import logging
import math
from typing import Any

import pluggy

from mmgan.config import RunConfig
from mmgan.contract.manager import metric_goals
from mmgan.errors import ConfigError

log = logging.getLogger("mmgan")


class BestExports:
    """Which modalities select a best export, by which metric and goal, and the best score so far."""

    def __init__(self, pm: pluggy.PluginManager, config: RunConfig) -> None:
        self.goals: dict[str, tuple[str, str]] = {}  # modality -> (metric, "min" | "max")
        self.best: dict[str, dict[str, Any]] = {}  # modality -> {"metric", "goal", "value", "step"}
        wanted = {name: mcfg.select_by for name, mcfg in config.modalities.items() if mcfg.select_by}
        if not wanted:
            return
        known = metric_goals(pm)
        for name, metric in wanted.items():
            if (name, metric) not in known:
                valid = sorted(m for (mod, m) in known if mod == name)
                raise ConfigError(f"{name}.select_by: no installed plugin declares a {name} metric {metric!r}; "
                                  f"declared: {', '.join(valid) or 'none'}")
            self.goals[name] = (metric, known[(name, metric)])
        if not config.train.eval_every:
            log.info("train.eval_every is 0: no evaluation, so no best export by %s is kept",
                     ", ".join(f"{n}.select_by={m}" for n, (m, _) in self.goals.items()))

    def restore(self, best: dict[str, dict[str, Any]]) -> None:
        """The best scores saved in a checkpoint (for the modalities that still select by the same metric)."""
        for name, entry in best.items():
            if name in self.goals and entry.get("metric") == self.goals[name][0]:
                self.best[name] = dict(entry)

    def improved(self, step: int, record: dict[str, float]) -> list[str]:
        """The modalities whose ``<modality>/eval/<metric>`` in ``record`` beats their best so far (a tie
        keeps the earlier export); their best is now this step."""
        better = []
        for name, (metric, goal) in self.goals.items():
            value = record.get(f"{name}/eval/{metric}")
            if value is None or not math.isfinite(value):
                continue
            old = self.best.get(name)
            if old is not None and not (value < old["value"] if goal == "min" else value > old["value"]):
                continue
            self.best[name] = {"metric": metric, "goal": goal, "value": value, "step": step}
            better.append(name)
        return better
