"""What runs and exports written before a config key existed meant by leaving it out, so that they resume and
load as they were trained. Split from ``mmgan.config``, which re-exports these names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmgan.contract.modality import Modality

# What a run or an export written before a modality key existed meant by its absence, where that key's
# default (in a plugin's config class) may differ: such runs resume and load as they were trained.
LEGACY_MODALITY_VALUES: dict[str, Any] = {"trunk_depth": -1}
# the same for [trunk]: before trunk.residual existed every trunk was "plain"; before
# trunk.exclusive_blocks every block trained at [train]'s settings
LEGACY_TRUNK_VALUES: dict[str, Any] = {"residual": "plain", "exclusive_blocks": "shared"}


def legacy_modality_values(section: Mapping[str, Any], modality: Modality | None = None) -> dict[str, Any]:
    """The values a modality section written before some keys existed meant by leaving them out: core's
    (``LEGACY_MODALITY_VALUES``) and the modality's own (``Modality.legacy_values``)."""
    legacy = {**LEGACY_MODALITY_VALUES, **(modality.legacy_values if modality is not None else {})}
    return {key: value for key, value in legacy.items() if key not in section}


def legacy_trunk_values(section: Mapping[str, Any]) -> dict[str, Any]:
    """The values a [trunk] section (or an export's trunk) written before some keys existed meant."""
    return {key: value for key, value in LEGACY_TRUNK_VALUES.items() if key not in section}
