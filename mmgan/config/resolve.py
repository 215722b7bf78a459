"""Run configuration: dataclasses are the single source of truth; TOML files and ``--set`` land here.

Precedence, lowest first: dataclass defaults, the modalities' suggested training defaults, a TOML file
(``--config``), then command-line flags and ``--set section.key=value``. Validation happens once, in
``validate``, whatever the source.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mmgan.config.legacy import legacy_modality_values, legacy_trunk_values
from mmgan.config.schedule import check_schedule
from mmgan.config.sections import RunConfig
from mmgan.config.suggest import OWN_KEYS, log_suggestion_conflicts, own_suggestions, own_value, suggested_values
from mmgan.config.values import coerce, field_types, parse_assignment, read_toml, toml_value, validate_section
from mmgan.contract.modality import Modality
from mmgan.errors import CheckpointError, ConfigError

log = logging.getLogger("mmgan")

# the documented range of each [train] size that memory or time grows with
SIZE_RANGES = {"num_samples": (1, 1024), "ema_bn_batches": (0, 1000), "num_workers": (0, 256),
               "shuffle_buffer": (1, 1_000_000)}


def default_config(modalities: Iterable[Modality], plugin_sections: Mapping[str, type] | None = None,
                   log_conflicts: bool = True) -> RunConfig:
    """Defaults for a run of these modalities (and the plugins' own sections), including the modalities'
    suggested training settings.

    Where modalities suggest different values, the longest ``steps`` and the deepest ``trunk.depth`` win
    and, for any other key, the first modality named (``--plugin`` order); the conflict is logged
    (``log_conflicts``; ``resolve`` logs it after the config file and flags, and only where they left
    the suggested value in place).
    """
    mods = list(modalities)
    config = RunConfig(modalities={m.name: m.config_class() for m in mods},
                       plugins={name: cls() for name, cls in (plugin_sections or {}).items()})
    config.run.modalities = [m.name for m in mods]
    own = own_suggestions(mods)
    for name, values in own.items():
        for key, value in values.items():
            set_value(config, f"{name}.{key}", value)
    if own:
        steps = [config.modalities[m.name].steps or config.train.steps for m in mods]
        config.train.steps = max(steps)  # the loop runs until the longest modality is done
        # the shared trunk's EMA averages no more than the modality that averages least (image: not at all),
        # so no modality's export pairs its live stem and head with a lagging trunk
        for m in mods:  # each modality's decay written out, then the trunk's
            config.modalities[m.name].ema_decay = own_value(config, m.name, "ema_decay")
        config.train.ema_decay = min(config.modalities[m.name].ema_decay for m in mods)
    for section in ("train", "trunk"):
        chosen, _ = suggested_values(mods, section, skip=OWN_KEYS if own else ())
        for key, (value, _) in chosen.items():
            set_value(config, f"{section}.{key}", value)
    if log_conflicts:
        log_suggestion_conflicts(config, mods)
    return config


def set_value(config: RunConfig, key: str, value: Any, typed: bool = False) -> None:
    """Set ``section.name`` to ``value`` (a string from the command line or a TOML value), with checks;
    ``typed``: a TOML value, whose strings are not parsed as numbers or bools (:func:`coerce`)."""
    section_name, sep, name = key.partition(".")
    if not sep or not name:
        raise ConfigError(f"config key {key!r} must look like section.key (e.g. train.steps)")
    if (section_name, name) == ("run", "modalities"):
        raise ConfigError("run.modalities is chosen with --plugin (or [run] modalities in a config file), not --set")
    section = config.section(section_name)
    types = field_types(section)
    if name not in types:
        raise ConfigError(
            f"unknown config key {key!r}; valid keys in [{section_name}]: {', '.join(sorted(types))}"
        )
    setattr(section, name, coerce(key, value, types[name], typed))


def apply_mapping(config: RunConfig, data: Mapping[str, Mapping[str, Any]], origin: str = "") -> None:
    """Apply ``{section: {key: value}}`` (a parsed TOML file) to ``config``."""
    for section_name, section in data.items():
        for name, value in section.items():
            if (section_name, name) == ("run", "modalities"):
                continue  # fixed before the config is built; see modalities_in
            try:
                set_value(config, f"{section_name}.{name}", value, typed=True)
            except ConfigError as exc:
                raise ConfigError(f"{origin}: {exc}" if origin else str(exc)) from None


def modalities_in(data: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The modality names a parsed config file asks for (``[run] modalities``), if any."""
    mods = data.get("run", {}).get("modalities", [])
    if isinstance(mods, str):
        mods = [mods]
    if not (isinstance(mods, list) and all(isinstance(m, str) for m in mods)):
        raise ConfigError(f"[run] modalities must be a list of modality names, got {mods!r}")
    return list(mods)


def validate(config: RunConfig) -> None:
    """Check values once, whatever set them; a modality config may add ``validate(self)`` of its own."""
    t = config.train
    positive = ("steps", "batch_size", "log_every", "sample_every", "num_samples", "checkpoint_every",
                "keep_checkpoints")
    for name in positive:
        if getattr(t, name) <= 0:
            raise ConfigError(f"train.{name} must be positive, got {getattr(t, name)}")
    for name in ("lr_g", "lr_d"):
        if not (getattr(t, name) > 0 and math.isfinite(getattr(t, name))):
            raise ConfigError(f"train.{name} must be a positive number, got {getattr(t, name)}")
    for name in ("beta1", "beta2", "ema_decay"):
        if not 0 <= getattr(t, name) < 1:
            raise ConfigError(f"train.{name} must be in [0, 1), got {getattr(t, name)}")
    if t.mixed_precision not in ("auto", "", "no", "bf16", "fp16"):
        raise ConfigError(f"train.mixed_precision must be auto, no, bf16 or fp16, got {t.mixed_precision!r}")
    from mmgan.config.trackers import check_trackers

    check_trackers(t.log_with)
    if t.ema_rampup < 0:
        raise ConfigError(f"train.ema_rampup must be >= 0, got {t.ema_rampup}")
    # sizes that cost memory or time in proportion: a range each, so an absurd value is one line, not a
    # 40 GB allocation or a checkpoint that ignores SIGTERM (faults row 92)
    for key, (low, high) in SIZE_RANGES.items():
        if not low <= getattr(t, key) <= high:
            raise ConfigError(f"train.{key} must be between {low} and {high}, got {getattr(t, key)}")
    if t.on_collapse not in ("off", "warn", "stop", "rollback"):
        raise ConfigError(f"train.on_collapse must be off, warn, stop or rollback, got {t.on_collapse!r}")
    if t.collapse_window < 0 or t.collapse_every < 0:
        raise ConfigError(f"train.collapse_window and train.collapse_every must be >= 0 (0: automatic), got "
                          f"{t.collapse_window} and {t.collapse_every}")
    if not 0 <= t.collapse_diversity <= 1:
        raise ConfigError(f"train.collapse_diversity must be in [0, 1], got {t.collapse_diversity}")
    if t.eval_every < 0 or t.eval_samples < 1:
        raise ConfigError(f"train.eval_every must be >= 0 and train.eval_samples positive, got {t.eval_every} "
                          f"and {t.eval_samples}")
    tr = config.trunk
    if not (tr.lr_scale >= 0 and math.isfinite(tr.lr_scale)):
        raise ConfigError(f"trunk.lr_scale must be a number >= 0, got {tr.lr_scale}")
    try:  # the sizes' documented ranges, the residual kind: before anything is built or written
        tr.validate()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not -1 <= config.run.frozen_blocks <= tr.depth:
        raise ConfigError(f"run.frozen_blocks must be in [-1, trunk.depth={tr.depth}], got {config.run.frozen_blocks}")
    if config.run.init_trunk_export not in ("best", "last"):
        raise ConfigError(f"run.init_trunk_export must be best or last, got {config.run.init_trunk_export!r}")
    if not 0 <= config.run.seed < 2**32:
        raise ConfigError(f"run.seed must be in [0, 2**32), got {config.run.seed}")
    if not config.run.modalities:
        raise ConfigError("no modality to train: pass --plugin NAME")
    for name, section in config.modalities.items():
        for key in ("batch_size", "eval_samples", "steps", "lr_g", "lr_d"):
            if not getattr(section, key, 0) >= 0:
                raise ConfigError(f"{name}.{key} must be >= 0 (0: train.{key}), got {getattr(section, key)}")
        for key in ("beta1", "beta2", "ema_decay"):
            value = getattr(section, key, -1.0)
            if value != -1.0 and not 0 <= value < 1:
                raise ConfigError(f"{name}.{key} must be in [0, 1) or -1 (train.{key}), got {value}")
        if getattr(section, "steps", 0) > t.steps:
            log.warning("%s.steps=%d is past train.steps=%d: the loop ends first", name, section.steps, t.steps)
        # above trunk.depth it goes through every block; a value past a real trunk is a mistake (a trunk of
        # depth 0, the paper's network, takes any modality's default)
        if section.trunk_depth < -1 or 0 < config.trunk.depth < section.trunk_depth:
            raise ConfigError(f"{name}.trunk_depth must be -1 (all blocks) or between 0 and trunk.depth="
                              f"{config.trunk.depth}, got {section.trunk_depth}")
        held_out = getattr(section, "eval_data", "")
        if held_out and not held_out.startswith("builtin:") and "{" not in held_out and not Path(held_out).exists():
            raise ConfigError(f"{name}.eval_data: {held_out} does not exist (a folder, file or shards of held-out "
                              "data; empty: the training data)")
        try:
            check_schedule(name, section)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if section.adversarial_start > own_value(config, name, "steps"):
            log.warning("%s.adversarial_start=%d is past its last step (%d): the whole run is the warm-up", name,
                        section.adversarial_start, own_value(config, name, "steps"))
        validate_section(section, f"[{name}]")
    for name, section in config.plugins.items():
        validate_section(section, f"[{name}]")


def to_toml(config: RunConfig) -> str:
    """Serialise the resolved config; ``read_toml`` of the result rebuilds an equal config."""
    lines = []
    for section_name, section in config.to_dict().items():
        lines.append(f"[{section_name}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in section.items()]
        lines.append("")
    return "\n".join(lines)


def resolve(
    lookup: Callable[[str], Modality],
    plugins: Sequence[str] = (),
    config_file: str | Path | None = None,
    resume_dir: str | Path | None = None,
    data: Sequence[str] = (),
    steps: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    plugin_sections: Mapping[str, type] | None = None,
) -> RunConfig:
    """The run config from everything ``mmgan run`` accepts, validated; ``lookup`` finds a modality.

    ``plugin_sections`` are the config sections of plugins (``mmgan_register_config``); by default those
    of the installed plugins, checked against the modality names.
    """
    file_data: dict[str, dict[str, Any]] = {}
    origin = ""
    if resume_dir is not None:
        if config_file is not None or out is not None:
            raise ConfigError("--resume continues a run with its own config.toml and directory; "
                              "leave out --config and --out (use --steps or --set to change it)")
        saved = Path(resume_dir) / "config.toml"
        if not saved.is_file():
            raise CheckpointError(f"run {resume_dir} has no config.toml: nothing to resume")
        file_data, origin = read_toml(saved), str(saved)
        for name in modalities_in(file_data):
            file_data.setdefault(name, {}).update(legacy_modality_values(file_data.get(name, {}), lookup(name)))
        file_data.setdefault("trunk", {}).update(legacy_trunk_values(file_data.get("trunk", {})))
        if plugins and list(plugins) != modalities_in(file_data):
            raise ConfigError(f"--plugin {' '.join(plugins)} differs from the resumed run's "
                              f"modalities {modalities_in(file_data)}; leave --plugin out when resuming")
    elif config_file is not None:
        file_data, origin = read_toml(config_file), str(config_file)
    names = list(dict.fromkeys(plugins)) or modalities_in(file_data)
    if not names:
        raise ConfigError("no modality to train: pass --plugin NAME (see `mmgan plugins`)")
    if plugin_sections is None:
        from mmgan.contract.manager import plugin_config_sections

        plugin_sections = plugin_config_sections()
    mods = [lookup(name) for name in names]
    config = default_config(mods, plugin_sections, log_conflicts=False)
    apply_mapping(config, file_data, origin)
    later: set[str] = set()  # the keys a flag or --set gave after the file: their values are not the file's
    given: dict[str, str] = {}
    for source in data:
        target, sep, path = source.partition("=")
        if not (sep and target in config.modalities) and len(names) == 1:
            target, path = names[0], source
        if target in given:
            raise ConfigError(f"--data given twice for {target}: {given[target]!r} and {source!r}; "
                              "a modality trains on one source (pack several into shards with mmgan data pack)")
        if target in config.modalities:
            given[target] = source
            config.modalities[target].data = path
            later.add(f"{target}.data")
        else:
            raise ConfigError(f"--data {source!r}: with several modalities write MODALITY=SOURCE "
                              f"(modalities: {', '.join(names)})")
    flags = {"train.steps": steps, "train.batch_size": batch_size, "run.seed": seed}
    for key, value in flags.items():
        if value is not None:
            set_value(config, key, value)
            later.add(key)
            if key in ("train.steps", "train.batch_size"):
                # --steps and --batch-size are every modality's (per modality: --set <modality>.steps=N)
                for name, section in config.modalities.items():
                    setattr(section, key.split(".")[1], 0)
                    later.add(f"{name}.{key.split('.')[1]}")
    for text in overrides:
        key, value = parse_assignment(text)
        set_value(config, key, value)
        later.add(key)
    if resume_dir is not None:
        config.run.out = str(resume_dir)
    elif out is not None:
        config.run.out = str(out)
    elif not config.run.out:
        config.run.out = str(Path("runs") / f"{'-'.join(names)}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:  # config.toml, run.json and exports record the path as UTF-8 text: a name that is not would break them
        config.run.out.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"run directory {config.run.out!r}: its name is not valid UTF-8 (config.toml and the "
                          "exports record it as text); choose a UTF-8 name") from None
    if Path(config.run.out).exists() and not Path(config.run.out).is_dir():
        raise ConfigError(f"run directory {config.run.out} exists and is not a directory")
    try:
        validate(config)
    except ConfigError as exc:
        # a value out of range that the file gave: name the file too, as its type errors do (faults row 77)
        from_file = {f"{section}.{key}" for section, values in file_data.items() for key in values} - later
        if origin and keys_named(str(exc)) & from_file:
            raise ConfigError(f"{origin}: {exc}") from None
        raise
    log_suggestion_conflicts(config, mods)
    return config


def keys_named(message: str) -> set[str]:
    """The ``section.key`` names in a validation message: ``speech.lr_g must be ...``, and ``[speech] n_fft
    ...`` as a section's own ``validate()`` words it (:func:`validate_section`)."""
    keys = set(re.findall(r"\b([A-Za-z_]\w*\.[A-Za-z_]\w*)\b", message))
    own = re.match(r"\[(\w+)\] (\w+)\b", message)
    if own:
        keys.add(f"{own[1]}.{own[2]}")
    return keys
