"""mmgan: a plugin-based multimodal GAN framework."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

import pluggy

__version__ = "0.1.0"

# the markers of mmgan's hooks: ``@mmgan.hookimpl`` on a plugin's function, ``hookspec`` on the contract's
hookspec = pluggy.HookspecMarker("mmgan")
hookimpl = pluggy.HookimplMarker("mmgan")

# old module paths -> where they live now (mmgan.compat: kept until mmgan 1.0 for plugins that import them)
MOVED_MODULES = {"mmgan.hookspecs": "mmgan.compat.hookspecs", "mmgan.metrics": "mmgan.compat.metrics",
                 "mmgan.shards": "mmgan.compat.shards"}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import mmgan.metrics`` (and the other old paths) gives the module at its new path: one module object
    under both names, so its state (a registry, say) is shared."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED_MODULES[spec.name])
        self.own_spec = module.__spec__  # the import system sets the old name's spec on it next
        return module

    def exec_module(self, module: ModuleType) -> None:
        """The module ran at its own path already: give it back its own spec."""
        module.__spec__ = self.own_spec


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())

__all__ = ["__version__", "hookimpl", "hookspec"]
