"""Plugin manager: loads core's own plugins and every ``mmgan`` entry point, built-ins included."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import os
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pluggy

from mmgan import __version__, hookimpl
from mmgan.contract import hookspecs, legacy_hookspecs
from mmgan.contract.adversarial import AdversarialLoss
from mmgan.contract.callbacks import TrainingCallback
from mmgan.contract.legacy import LegacyModality, warn_legacy_plugins
from mmgan.contract.modality import Modality
from mmgan.contract.plugin import ModalityPlugin
from mmgan.errors import ConfigError, PluginError

log = logging.getLogger("mmgan")

ENTRY_POINT_GROUP = "mmgan"
# Core's own plugins are registered directly: they are part of mmgan, not installed packages.
CORE_PLUGINS = ("mmgan.losses",)
DISCRIMINATORS = "mmgan.modalities"  # core's registered object that answers build_discriminator (not listed)


@dataclass
class PluginInfo:
    """What ``mmgan plugins`` shows for one loaded plugin."""

    name: str
    version: str
    source: str
    hooks: list[str] = field(default_factory=list)
    modalities: list[str] = field(default_factory=list)
    # the methods its modality object writes (ModalityPlugin's, which core calls directly)
    methods: list[str] = field(default_factory=list)


class ModalityDiscriminators:
    """Core's answer to ``mmgan_build_discriminator``, last of all: the modality object's discriminator, which
    wrappers (``hookimpl(wrapper=True)``) receive; a contract-6 plugin's own answer comes first."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm

    @hookimpl(trylast=True)
    def mmgan_build_discriminator(self, modality: str, config: Any) -> Any:
        return get_modality_object(modality, self.pm).build_discriminator(config)


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("mmgan")
    pm.add_hookspecs(hookspecs)
    pm.add_hookspecs(legacy_hookspecs)
    for module_name in CORE_PLUGINS:  # a plugin of core, registered by name like an entry point
        pm.register(importlib.import_module(module_name), name=module_name)
    pm.register(ModalityDiscriminators(pm), name=DISCRIMINATORS)
    return pm


def load_entry_points(pm: pluggy.PluginManager, only: set[str] | None = None) -> list[str]:
    """Register every ``mmgan`` entry point (or only the names in ``only``); return the failures.

    A plugin that fails to import is reported in one log line naming it; the others still load.
    """
    failures = []
    # sorted: which plugin answers a firstresult hook first must not depend on the order of sys.path
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if (only is not None and ep.name not in only) or pm.get_plugin(ep.name) is not None:
            continue
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as exc:  # a broken third-party package (import error, bad hook) must not stop the rest
            message = " ".join(str(exc).split())  # one line, whatever the exception printed
            log.warning("plugin %r (%s) failed to load: %s: %s", ep.name, ep.value, type(exc).__name__, message)
            failures.append(ep.name)
            continue
        dist = ep.dist
        _SOURCES[module] = (dist.name if dist else "?", dist.version if dist else "?")
    return failures


# the distribution each entry-point module came from, for `mmgan plugins`
_SOURCES: dict[object, tuple[str, str]] = {}


@cache
def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager; entry points are loaded on first use, once.

    ``MMGAN_PLUGINS=a,b`` loads only the entry points named a and b (core's own plugins always load).
    """
    pm = _new_manager()
    only_env = os.environ.get("MMGAN_PLUGINS")
    only = {name.strip() for name in only_env.split(",") if name.strip()} if only_env is not None else None
    load_entry_points(pm, only)
    warn_legacy_plugins(pm)
    return pm


def modality_objects(pm: pluggy.PluginManager | None = None) -> dict[str, ModalityPlugin]:
    """Every registered modality's object by name (a bare ``Modality`` of contract 6 becomes a
    :class:`LegacyModality`). A name two plugins register is left out, with a warning naming both: one bad
    plugin disables its own modality, never every command."""
    pm = pm or get_plugin_manager()
    found: dict[str, ModalityPlugin] = {}
    owners: dict[str, list[str]] = {}
    for impl in pm.hook.mmgan_register_modalities.get_hookimpls()[::-1]:  # pluggy's order: last registered first
        def register(obj: ModalityPlugin | Modality, plugin: str = impl.plugin_name) -> None:
            if isinstance(obj, Modality):
                obj = LegacyModality(obj, plugin)
            elif not isinstance(getattr(obj, "modality", None), Modality):
                raise PluginError(f"plugin {plugin!r} registers {obj!r}: register a ModalityPlugin or a Modality")
            owners.setdefault(obj.name, []).append(plugin)
            found.setdefault(obj.name, obj)
        impl.function(register=register)
    for name, plugins in owners.items():
        if len(plugins) > 1:
            del found[name]
            _DISABLED[name] = plugins
            if (name, *plugins) not in _WARNED_TWICE:
                _WARNED_TWICE.add((name, *plugins))
                log.warning("modality %r is registered by two plugins (%s): it is disabled until one is uninstalled",
                            name, " and ".join(repr(p) for p in sorted(plugins)))
    return found


# modalities registered by several plugins (left out), and the warnings given about them
_DISABLED: dict[str, list[str]] = {}
_WARNED_TWICE: set[tuple[str, ...]] = set()


def modalities(pm: pluggy.PluginManager | None = None) -> dict[str, Modality]:
    """Every registered modality's declaration by name (one two plugins register is left out, see above)."""
    return {name: obj.modality for name, obj in modality_objects(pm).items()}


def get_modality_object(name: str, pm: pluggy.PluginManager | None = None) -> ModalityPlugin:
    """The object of modality ``name``, whose methods core calls, or a PluginError listing the installed ones."""
    found = modality_objects(pm)
    if name not in found:
        if name in _DISABLED:
            raise PluginError(f"modality {name!r} is registered by two plugins "
                              f"({' and '.join(repr(p) for p in sorted(_DISABLED[name]))}): uninstall one")
        installed = ", ".join(sorted(found)) or "none"
        raise PluginError(f"no plugin provides modality {name!r}; installed modalities: {installed}")
    return found[name]


def get_modality(name: str, pm: pluggy.PluginManager | None = None) -> Modality:
    """The modality called ``name``, or a PluginError listing the installed ones."""
    return get_modality_object(name, pm).modality


def adversarial_losses(pm: pluggy.PluginManager | None = None) -> dict[str, AdversarialLoss]:
    """Every registered adversarial loss by name."""
    pm = pm or get_plugin_manager()
    found: dict[str, AdversarialLoss] = {}

    def register(name: str, loss: AdversarialLoss) -> None:
        if name in found:
            raise PluginError(f"adversarial loss {name!r} is registered by two plugins")
        found[name] = loss

    pm.hook.mmgan_register_losses(register=register)
    return found


def get_adversarial_loss(name: str, pm: pluggy.PluginManager | None = None) -> AdversarialLoss:
    """The adversarial loss called ``name``, or a PluginError listing the available ones."""
    found = adversarial_losses(pm)
    if name not in found:
        raise PluginError(f"unknown adversarial loss {name!r}; available: {', '.join(sorted(found))}")
    return found[name]


CORE_SECTIONS = ("run", "train", "trunk")
# what a modality object may write (ModalityPlugin's methods that core calls)
MODALITY_METHODS = ("build_generator", "build_discriminator", "read_data", "shard_codec", "write_samples",
                    "generator_loss_terms", "discriminator_loss_terms", "evaluate", "report_section", "onnx_module",
                    "onnx_metadata", "features", "write_interpolation")


def plugin_config_sections(pm: pluggy.PluginManager | None = None) -> dict[str, type]:
    """``{section: dataclass}`` that plugins add to every run's config (``mmgan_register_config``).

    A section named like a core section, a modality, or another plugin's section is a ConfigError
    naming both owners.
    """
    pm = pm or get_plugin_manager()
    found: dict[str, type] = {}
    owners: dict[str, str] = {}
    modality_owners = _modality_owners(pm)
    for impl in pm.hook.mmgan_register_config.get_hookimpls():
        def register(section: str, config_class: type, plugin: str = impl.plugin_name) -> None:
            if not (isinstance(config_class, type) and dataclasses.is_dataclass(config_class)):
                raise PluginError(f"plugin {plugin!r}: config section [{section}] must be a dataclass, "
                                  f"got {config_class!r}")
            if section in CORE_SECTIONS:
                raise ConfigError(f"plugin {plugin!r} registers config section [{section}], which is core's")
            if section in modality_owners:
                raise ConfigError(f"plugin {plugin!r} registers config section [{section}], the section of "
                                  f"modality {section!r} from plugin {modality_owners[section]!r}")
            if section in found:
                raise ConfigError(f"plugins {owners[section]!r} and {plugin!r} both register config section "
                                  f"[{section}]")
            found[section], owners[section] = config_class, plugin

        impl.function(register=register)
    return found


def _modality_owners(pm: pluggy.PluginManager) -> dict[str, str]:
    """Which plugin registers each modality."""
    owners: dict[str, str] = {}
    for impl in pm.hook.mmgan_register_modalities.get_hookimpls():
        impl.function(register=lambda obj, plugin=impl.plugin_name: owners.setdefault(obj.name, plugin))
    return owners


def training_callbacks(pm: pluggy.PluginManager | None = None) -> list[TrainingCallback]:
    """Every plugin's training callbacks (``mmgan_register_callbacks``); a name used twice, or none, is an error
    (the name keys the callback's state in checkpoints)."""
    pm = pm or get_plugin_manager()
    found: list[TrainingCallback] = []
    for impl in pm.hook.mmgan_register_callbacks.get_hookimpls()[::-1]:
        def register(callback: TrainingCallback, plugin: str = impl.plugin_name) -> None:
            if not isinstance(callback, TrainingCallback):
                raise PluginError(f"plugin {plugin!r} registers {callback!r}: a callback is a TrainingCallback")
            if not callback.name or any(c.name == callback.name for c in found):
                raise PluginError(f"plugin {plugin!r} registers a training callback named {callback.name!r}: "
                                  "give each callback its own non-empty name (its state's key in checkpoints)")
            found.append(callback)
        impl.function(register=register)
    return found


def metric_goals(pm: pluggy.PluginManager | None = None) -> dict[tuple[str, str], str]:
    """``{(modality, metric): "min" | "max"}`` from every plugin's ``mmgan_register_metrics``."""
    pm = pm or get_plugin_manager()
    found: dict[tuple[str, str], str] = {}

    def register(modality: str, metric: str, goal: str) -> None:
        if goal not in ("min", "max"):
            raise PluginError(f"metric {modality}/{metric}: goal must be 'min' or 'max', got {goal!r}")
        if found.get((modality, metric), goal) != goal:
            raise PluginError(f"metric {modality}/{metric} is registered as both 'min' and 'max'")
        found[(modality, metric)] = goal

    pm.hook.mmgan_register_metrics(register=register)
    return found


def describe_plugins(pm: pluggy.PluginManager | None = None) -> list[PluginInfo]:
    """Name, version, source, implemented hooks and modalities of every loaded plugin."""
    pm = pm or get_plugin_manager()
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None or name == DISCRIMINATORS:
            continue
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        sub = pluggy.PluginManager("mmgan")
        sub.add_hookspecs(hookspecs)
        sub.add_hookspecs(legacy_hookspecs)
        sub.register(plugin)
        mods = sorted(modalities(sub)) if "mmgan_register_modalities" in hooks else []
        if name in CORE_PLUGINS:
            dist, version, source = name, __version__, "core"
        else:
            dist, version = _SOURCES.get(plugin, ("?", "?"))
            source = f"entry point of {dist}" if dist != "?" else "registered in process"
        methods = sorted(m for m in MODALITY_METHODS if isinstance(plugin, ModalityPlugin)
                         and getattr(type(plugin), m) is not getattr(ModalityPlugin, m))
        infos.append(PluginInfo(name=name, version=version, source=source, hooks=hooks, modalities=mods,
                                methods=methods))
    return sorted(infos, key=lambda info: (info.source != "core", info.name))
