"""Exceptions for user mistakes: the CLI turns each into one line and a non-zero exit."""

from __future__ import annotations


def first_line(exc: BaseException | None) -> str:
    """The first line of an exception's message (torch's errors run to many lines): for one-line errors."""
    return (str(exc).splitlines() or [""])[0] if exc is not None else ""


class MMGANError(Exception):
    """A problem the user can fix (bad input, bad config, missing file); never a bug in mmgan."""


class ConfigError(MMGANError):
    """An invalid configuration: unknown key, bad value, unreadable TOML."""


class DataError(MMGANError):
    """A data source that cannot be read: missing, empty, or with nothing decodable."""


class PluginError(MMGANError):
    """A plugin, modality or loss that is not installed or does not answer its hook."""


class CheckpointError(MMGANError):
    """A run directory without a usable checkpoint or export, or a corrupt one."""


class MetricError(MMGANError):
    """An evaluation that cannot give a meaningful number: too few samples, mismatched shapes."""


class StorageError(MMGANError):
    """A file or directory that cannot be written: disk full, read-only filesystem, no permission."""


class TrainingDiverged(MMGANError):
    """A run whose losses or weights became non-finite (NaN or inf): it stops, writing nothing from that state."""


class TrainingCollapsed(MMGANError):
    """A run the collapse watchdog stopped (``train.on_collapse = "stop"``, or a rollback that could not be made)."""


class PluginFailed(Exception):
    """A plugin's own code raised (a bug in the plugin, not a mistake of the user's): the CLI names the modality,
    the plugin and the method in one line, and ``-v`` shows the traceback. Not an :class:`MMGANError`."""
