"""Kept so that ``from mmgan import metrics`` keeps working: the distances live in
:mod:`mmgan.evaluation.distances` (public names: :mod:`mmgan.api`).

The image plugin's Laplacian-pyramid SWD was here before it moved to ``mmgan_image.swd``; its old names keep
working here with a DeprecationWarning until mmgan 1.0. Core never imports a plugin: the image plugin, when
it loads, tells this module where they went (:func:`moved_to_plugin`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

# the distances, read from mmgan.evaluation.distances on first use
DISTANCES = ("check_enough_samples", "feature_statistics", "frechet_distance", "frechet_distance_from_statistics",
             "kernel_inception_distance", "min_samples_for_covariance", "precision_recall",
             "sliced_wasserstein")

_MOVED: dict[str, tuple[str, Callable[[], Any]]] = {}


def moved_to_plugin(names: Iterable[str], where: str, load: Callable[[], Any]) -> None:
    """Called by a plugin as it loads: ``names`` that were in this module are now in its module ``where``,
    which ``load()`` imports."""
    for name in names:
        _MOVED[name] = (where, load)


def __getattr__(name: str) -> object:
    if name in DISTANCES:  # on first use: plugins import this module at every CLI start
        import mmgan.evaluation.distances as distances

        return getattr(distances, name)
    if name not in _MOVED and not name.startswith("__"):  # import machinery asks for __path__ and the like
        from mmgan.contract.manager import get_plugin_manager

        get_plugin_manager()  # loads the installed plugins, which say what moved to them
    if name in _MOVED:
        where, load = _MOVED[name]
        warnings.warn(f"mmgan.metrics.{name} moved to a plugin: import it from {where}", DeprecationWarning,
                      stacklevel=2)
        return getattr(load(), name)
    raise AttributeError(f"module 'mmgan.metrics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *DISTANCES})
