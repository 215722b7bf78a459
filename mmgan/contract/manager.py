"""Plugin manager: loads core's own plugins and every ``mmgan`` entry point, built-ins included."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import os
from dataclasses import dataclass, field
from functools import cache

import pluggy

from mmgan.contract import hookspecs
from mmgan.contract.modality import Modality
from mmgan.errors import PluginError
from mmgan.losses import AdversarialLoss

log = logging.getLogger("mmgan")

ENTRY_POINT_GROUP = "mmgan"
# Core's own plugins are registered directly: they are part of mmgan, not installed packages.
CORE_PLUGINS = ("mmgan.losses",)


@dataclass
class PluginInfo:
    """What ``mmgan plugins`` shows for one loaded plugin."""

    name: str
    version: str
    source: str
    hooks: list[str] = field(default_factory=list)
    modalities: list[str] = field(default_factory=list)


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("mmgan")
    pm.add_hookspecs(hookspecs)
    for module_name in CORE_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
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
    return pm


def modalities(pm: pluggy.PluginManager | None = None) -> dict[str, Modality]:
    """Every registered modality by name; two plugins registering one name is an error."""
    pm = pm or get_plugin_manager()
    found: dict[str, Modality] = {}

    def register(modality: Modality) -> None:
        if modality.name in found:
            raise PluginError(f"modality {modality.name!r} is registered by two plugins")
        found[modality.name] = modality

    pm.hook.mmgan_register_modalities(register=register)
    return found


def get_modality(name: str, pm: pluggy.PluginManager | None = None) -> Modality:
    """The modality called ``name``, or a PluginError listing the installed ones."""
    found = modalities(pm)
    if name not in found:
        installed = ", ".join(sorted(found)) or "none"
        raise PluginError(f"no plugin provides modality {name!r}; installed modalities: {installed}")
    return found[name]


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


def plugin_config_sections(pm: pluggy.PluginManager | None = None) -> dict[str, type]:
    """``{section: dataclass}`` that plugins add to every run's config (``mmgan_register_config``).

    A section named like a core section, a modality, or another plugin's section is a ConfigError
    naming both owners.
    """
    from mmgan.errors import ConfigError

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
        impl.function(register=lambda modality, plugin=impl.plugin_name: owners.setdefault(modality.name, plugin))
    return owners


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
        if plugin is None:
            continue
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        sub = pluggy.PluginManager("mmgan")
        sub.add_hookspecs(hookspecs)
        sub.register(plugin)
        mods = sorted(modalities(sub)) if "mmgan_register_modalities" in hooks else []
        if name in CORE_PLUGINS:
            dist, version, source = name, _core_version(), "core"
        else:
            dist, version = _SOURCES.get(plugin, ("?", "?"))
            source = f"entry point of {dist}" if dist != "?" else "registered in process"
        infos.append(PluginInfo(name=name, version=version, source=source, hooks=hooks, modalities=mods))
    return sorted(infos, key=lambda info: (info.source != "core", info.name))


def _core_version() -> str:
    from mmgan import __version__

    return __version__
