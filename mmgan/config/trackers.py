"""The experiment trackers ``train.log_with`` may name, and the check that each is known and installed."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from mmgan.errors import ConfigError

# Accelerate's tracker names -> the package each needs (and mmgan's extra, where it has one)
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet_ml",
            "aim": "aim", "clearml": "clearml", "dvclive": "dvclive", "swanlab": "swanlab", "trackio": "trackio"}
EXTRAS = {"tensorboard": "tensorboard", "wandb": "wandb"}


def check_trackers(names: Sequence[str]) -> None:
    """Each of ``names`` a tracker Accelerate knows, with its package installed; else a one-line error."""
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"train.log_with: unknown tracker {name!r}; valid: {', '.join(TRACKERS)}")
        if importlib.util.find_spec(TRACKERS[name]) is None:
            how = f"pip install 'mmgan[{EXTRAS[name]}]'" if name in EXTRAS else f"pip install {TRACKERS[name]}"
            raise ConfigError(f"train.log_with: the {name} tracker needs the {TRACKERS[name]} package: {how}")
