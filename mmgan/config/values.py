"""Config values: turning strings and TOML values into a dataclass field's type, reading TOML files,
writing TOML values, and building one config section from a mapping, each with one-line errors."""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmgan.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


def field_types(obj: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(obj))
    return {f.name: hints[f.name] for f in dataclasses.fields(obj)}


def coerce(key: str, value: Any, expected: Any, typed: bool = False) -> Any:
    """``value`` as a field of type ``expected``. A string is parsed as the type (``--set`` gives only strings:
    ``--set train.steps=8``, ``--set image.spectral_norm=yes``). ``typed``: the value comes from a file whose
    values have types of their own (TOML), so a string where a number or a bool belongs is a mistake
    (``steps = "8"``), not text to parse."""
    origin = typing.get_origin(expected)
    if origin is list:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_type,) = typing.get_args(expected) or (Any,)
        return [coerce(key, v, item_type, typed) for v in value]
    if typed and isinstance(value, str) and expected in (bool, int, float):
        meant = coerce(key, value, expected)  # text that is no number or bool at all: its own message
        what = {bool: "true or false", int: "an integer", float: "a number"}[expected]
        raise ConfigError(f"{key}: expected {what}, got the string {value!r}; write {toml_value(meant)} "
                          "without quotes")
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if expected is int:
        return _number(key, value, int, (int,), "an integer")
    if expected is float:
        return _number(key, value, float, (int, float), "a number")
    if expected is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def parse_assignment(text: str) -> tuple[str, str]:
    """Split ``section.key=value`` from ``--set``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    return key.strip(), value.strip()


def read_toml(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a config file; any problem is one ConfigError naming the file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:  # a directory, no permission, ...
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    for name, section in data.items():
        if not isinstance(section, dict):
            raise ConfigError(f"config file {path}: top-level key {name!r} must be a [section]")
    return data


def validate_section(section: Any, origin: str) -> None:
    """Run a config dataclass's own ``validate()``, if it has one, turning its error into a ConfigError."""
    check = getattr(section, "validate", None)
    if check is not None:
        try:
            check()
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{origin} {exc}") from None


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def section_from_dict(cls: type, values: Mapping[str, Any], origin: str) -> Any:
    """Build a config dataclass from a mapping (an export's JSON), with the same checks as TOML."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{origin}: expected a table of settings, got {type(values).__name__}")
    obj = cls()
    types = field_types(obj)
    for name, value in values.items():
        if name not in types:
            raise ConfigError(f"{origin}: unknown key {name!r}; valid keys: {', '.join(sorted(types))}")
        setattr(obj, name, coerce(f"{origin}: {name}", value, types[name]))
    validate_section(obj, f"{origin}:")
    return obj


def _number(key: str, value: Any, kind: type, accepted: tuple[type, ...], what: str) -> Any:
    """``value`` as ``kind``: a number of an ``accepted`` type (never a bool) or a string that parses."""
    if isinstance(value, accepted) and not isinstance(value, bool):
        return kind(value)
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            raise ConfigError(f"{key}: expected {what}, got {value!r}") from None
    raise ConfigError(f"{key}: expected {what}, got {value!r}")
