"""What keeps plugins written against contract versions 1-6 working: a modality registered as a bare
:class:`Modality` becomes a :class:`LegacyModality` object (its behaviour comes from the per-modality hooks
in :mod:`mmgan.contract.legacy_hookspecs`, which core calls beside every modality object), and a plugin
implementing one of those hooks is warned once per process."""

from __future__ import annotations

import warnings

import pluggy

from mmgan.contract.legacy_hookspecs import REPLACED_BY
from mmgan.contract.modality import Modality
from mmgan.contract.plugin import ModalityPlugin

_WARNED: set[str] = set()
MIGRATION = "docs/plugins.md, 'Migrating from the per-modality hooks'"


class LegacyModality(ModalityPlugin):
    """The modality object of a modality declared with ``register(Modality(...))``: every method answers
    None, and core's calls of the per-modality hooks (made for every modality) give its behaviour."""

    def __init__(self, modality: Modality, plugin_name: str) -> None:
        self.modality = modality  # type: ignore[misc]  (an instance's declaration, not the class's)
        self.plugin_name = plugin_name


def legacy_hooks_of(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """The contract-6 per-modality hooks ``plugin`` implements."""
    return sorted(caller.name for caller in pm.get_hookcallers(plugin) or [] if caller.name in REPLACED_BY)


def warn_legacy_plugins(pm: pluggy.PluginManager) -> None:
    """A DeprecationWarning, once per plugin and process, for each plugin implementing a per-modality hook."""
    for name, plugin in pm.list_name_plugin():
        hooks = legacy_hooks_of(pm, plugin) if plugin is not None else []
        if hooks and name not in _WARNED:
            _WARNED.add(name)
            instead = "; ".join(f"{hook} -> {REPLACED_BY[hook]}" for hook in hooks)
            warnings.warn(f"plugin {name!r} implements the per-modality hooks of contract 6 ({instead}): they keep "
                          f"working until mmgan 1.0; see {MIGRATION}", DeprecationWarning, stacklevel=2)
