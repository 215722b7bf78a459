"""Helpers for testing a plugin, whether or not its package is pip-installed.

    from mmgan.testing import plugin_registered, tiny_run

    def test_my_modality_trains(tmp_path):
        with plugin_registered("my_pkg.plugin:plugin", name="mymod"):
            run = tiny_run(tmp_path / "run", plugins=["mymod"], steps=2)
        assert (run / "export" / "mymod.safetensors").is_file()

An installed package's entry points are loaded when mmgan starts; registering the same plugin again
under its name is an error in pluggy (``Plugin name already registered``). ``plugin_registered`` uses
the installed one in that case, and registers (then unregisters) it otherwise.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from mmgan.contract.manager import get_plugin_manager

# small sizes for the trunk and the loop: real networks, seconds on a CPU (each modality's own tiny sizes
# are its Modality.test_settings)
TINY_SETTINGS = ("trunk.width=32", "trunk.depth=1", "train.log_every=1", "train.num_samples=16",
                 "train.sample_every=2", "train.checkpoint_every=2", "train.eval_every=0")


def load_plugin(target: object | str) -> object:
    """``target`` itself, or the object an entry-point value names: ``"pkg.module"`` or ``"pkg.module:attr"``."""
    if not isinstance(target, str):
        return target
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module


@contextlib.contextmanager
def plugin_registered(target: object | str, name: str) -> Iterator[object]:
    """Register a plugin (an object, a module, or an entry-point value) on mmgan's plugin manager under
    ``name`` for the ``with`` block, then unregister it; if a plugin of that name is already there (the
    package is installed), yield that one and leave it registered."""
    pm = get_plugin_manager()
    installed = pm.get_plugin(name)
    if installed is not None:
        yield installed
        return
    plugin = load_plugin(target)
    pm.register(plugin, name=name)
    try:
        yield plugin
    finally:
        pm.unregister(plugin)


def tiny_run(out: str | Path, plugins: Sequence[str], steps: int = 2, batch_size: int = 4,
             overrides: Sequence[str] = ()) -> Path:
    """Train a run of ``plugins`` for ``steps`` steps at tiny sizes (TINY_SETTINGS, plus each modality's
    ``test_settings``); ``overrides`` (``section.key=value``) come last. Returns the run directory."""
    from mmgan import config as cfg
    from mmgan.contract.manager import get_modality
    from mmgan.engine import Trainer

    settings = [*TINY_SETTINGS]
    for name in plugins:
        settings += get_modality(name).test_settings
    config = cfg.resolve(get_modality, plugins=list(plugins), out=out, steps=steps, batch_size=batch_size,
                         overrides=[*settings, *overrides])
    return Trainer(config, progress=False).fit()
