"""What the modalities of a run suggest for [train] and [trunk], and each modality's own training settings
(``<modality>.steps``, ``lr_g``, ...) with the [train] value as their fallback. Split from ``mmgan.config``,
which re-exports these names."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mmgan.contract.modality import Modality

if TYPE_CHECKING:
    from mmgan.config.sections import RunConfig

log = logging.getLogger("mmgan")


# the [train] keys a modality section has too (0 or -1 there: the [train] value). In a run of several
# modalities each modality's suggestions for them go to its own section: each keeps its paper's steps,
# batch and optimiser, and no modality's value silently becomes another's.
OWN_KEYS = ("steps", "batch_size", "lr_g", "lr_d", "beta1", "beta2", "ema_decay", "eval_samples")
# what "not set" is in a modality section, per key (else 0)
UNSET = {"beta1": -1.0, "beta2": -1.0, "ema_decay": -1.0}


def own_suggestions(mods: Sequence[Modality]) -> dict[str, dict[str, Any]]:
    """Per modality, its suggested values for :data:`OWN_KEYS`, where a run trains several modalities
    (a run of one keeps them in [train], as it always did)."""
    if len(mods) < 2:
        return {}
    return {m.name: {k: v for k, v in m.train_defaults.items() if k in OWN_KEYS} for m in mods}


def own_value(config: RunConfig, name: str, key: str) -> Any:
    """Modality ``name``'s value of a :data:`OWN_KEYS` key: its own where set, else ``[train]``'s; its
    steps are at most ``train.steps`` (the loop's length)."""
    value = getattr(config.modalities[name], key, UNSET.get(key, 0))
    train = getattr(config.train, key)
    if value == UNSET.get(key, 0):
        return train
    return min(value, train) if key == "steps" else value


def has_own_optimisation(config: RunConfig) -> bool:
    """Whether any modality trains with its own steps, learning rates or betas (its optimizer groups)."""
    keys = ("steps", "lr_g", "lr_d", "beta1", "beta2")
    return any(own_value(config, name, key) != getattr(config.train, key)
               for name in config.modalities for key in keys)

# per section, the suggested key where the largest suggestion wins: the longest run, the deepest trunk (a
# modality goes through the first <modality>.trunk_depth blocks, so a deeper trunk serves a shallower one)
LARGEST_WINS = {"train": "steps", "trunk": "depth"}


def suggested_values(mods: Sequence[Modality], section: str = "train", skip: Sequence[str] = ()
                     ) -> tuple[dict[str, tuple[Any, str]], dict[str, str]]:
    """The ``[train]`` (``Modality.train_defaults``) or ``[trunk]`` (``Modality.trunk_defaults``) values the
    modalities suggest, as (value, modality), and, per key where they differ, a sentence on the conflict;
    keys in ``skip`` (each modality's own, in a run of several) are left out."""
    chosen: dict[str, tuple[Any, str]] = {}
    conflicts: dict[str, str] = {}
    for modality in mods:
        for key, value in getattr(modality, f"{section}_defaults").items():
            if key in skip:
                continue
            if key not in chosen:
                chosen[key] = (value, modality.name)
                continue
            if value == chosen[key][0]:
                continue
            keep = max(chosen[key], (value, modality.name)) if key == LARGEST_WINS.get(section) else chosen[key]
            hint = f" (per modality: --set {modality.name}.batch_size={value})" if key == "batch_size" else ""
            conflicts[f"{section}.{key}"] = (f"modalities suggest different {section}.{key} ({chosen[key][1]}: "
                                             f"{chosen[key][0]!r}, {modality.name}: {value!r}); "
                                             f"using {keep[0]!r}{hint}")
            chosen[key] = keep
    return chosen, conflicts


def log_suggestion_conflicts(config: RunConfig, mods: Sequence[Modality]) -> None:
    """Log the modalities' conflicting suggestions that decided a value of the final config (a value
    the config file or a flag set says nothing: the message would contradict the saved config)."""
    skip = OWN_KEYS if own_suggestions(mods) else ()
    for section in ("train", "trunk"):
        chosen, conflicts = suggested_values(mods, section, skip=skip if section == "train" else ())
        for key, message in conflicts.items():
            name = key.split(".", 1)[1]
            if getattr(config.section(section), name) == chosen[name][0]:
                log.info("%s", message)
