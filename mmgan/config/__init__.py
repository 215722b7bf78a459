"""A run's configuration: the dataclasses (one source of truth), TOML and ``--set``, validation once.

``resolve`` builds a run's :class:`RunConfig`; the modules beside it hold TOML values (``values``), what
modalities suggest (``suggest``), what old runs meant (``legacy``), the trunk's settings (``trunk``),
learning-rate schedules (``schedule``), trackers (``trackers``) and memory sizes (``sizes``).
"""

from __future__ import annotations

from mmgan.config.legacy import LEGACY_MODALITY_VALUES, LEGACY_TRUNK_VALUES, legacy_modality_values, legacy_trunk_values
from mmgan.config.resolve import (
    apply_mapping,
    default_config,
    modalities_in,
    resolve,
    set_value,
    to_toml,
    validate,
)
from mmgan.config.sections import RunConfig, RunSection, TrainConfig
from mmgan.config.suggest import (
    LARGEST_WINS,
    OWN_KEYS,
    UNSET,
    has_own_optimisation,
    log_suggestion_conflicts,
    own_suggestions,
    own_value,
    suggested_values,
)
from mmgan.config.trunk import TrunkConfig
from mmgan.config.values import (
    coerce,
    field_types,
    parse_assignment,
    read_toml,
    section_from_dict,
    toml_value,
    validate_section,
)
from mmgan.errors import CheckpointError, ConfigError  # mmgan.config named them before

__all__ = [
    "CheckpointError", "ConfigError", "LARGEST_WINS", "LEGACY_MODALITY_VALUES", "LEGACY_TRUNK_VALUES", "OWN_KEYS",
    "UNSET", "RunConfig", "RunSection", "TrainConfig", "TrunkConfig", "apply_mapping", "coerce", "default_config",
    "field_types", "has_own_optimisation", "legacy_modality_values", "legacy_trunk_values",
    "log_suggestion_conflicts", "modalities_in", "own_suggestions", "own_value", "parse_assignment", "read_toml",
    "resolve", "section_from_dict", "set_value", "suggested_values", "to_toml", "toml_value", "validate",
    "validate_section",
]
