"""The plugin contract: every hook is typed, documented here and in docs/, and built-ins honour it."""
# the hooks of the contract (nine, where several plugins contribute); contract 6's per-modality hooks are
# checked the same way (LEGACY) and tested working in test_legacy_contract.py

import inspect
import re
import typing
from pathlib import Path

import pluggy
import pytest

from mmgan.contract import hookspecs, legacy_hookspecs
from mmgan.contract.manager import get_plugin_manager

HOOKS = sorted(name for name, fn in vars(hookspecs).items()
               if name.startswith("mmgan_") and inspect.isfunction(fn))
LEGACY = sorted(name for name, fn in vars(legacy_hookspecs).items()
                if name.startswith("mmgan_") and inspect.isfunction(fn))
SPEC = {name: getattr(legacy_hookspecs if name in LEGACY else hookspecs, name) for name in HOOKS + LEGACY}
DOCS = Path(__file__).resolve().parent.parent / "docs" / "hooks.md"


def test_the_contract_has_every_capability():
    assert set(HOOKS) == {
        "mmgan_register_modalities", "mmgan_register_losses", "mmgan_loss_terms", "mmgan_build_discriminator",
        "mmgan_register_config", "mmgan_evaluate", "mmgan_register_metrics", "mmgan_register_commands",
        "mmgan_register_callbacks",
    }
    assert set(LEGACY) == {"mmgan_build_generator", "mmgan_read_data", "mmgan_shard_codec", "mmgan_write_samples",
                           "mmgan_report_section", "mmgan_generator_loss_terms", "mmgan_discriminator_loss_terms",
                           "mmgan_command_options"}


@pytest.mark.parametrize("name", HOOKS + LEGACY)
def test_hook_is_typed_and_says_when_it_is_called(name):
    import click
    import torch
    from torch import nn

    from mmgan.contract import adversarial, callbacks, codec, contexts, modality, plugin

    fn = SPEC[name]
    doc = inspect.getdoc(fn) or ""
    assert re.search(r"\bcalled\b", doc, re.IGNORECASE), f"{name}: docstring must say when it is called"
    names = {"torch": torch, "nn": nn, "click": click, "Path": Path, "Any": typing.Any}
    for module in (adversarial, callbacks, codec, contexts, modality, plugin, hookspecs, legacy_hookspecs):
        names |= vars(module)
    hints = typing.get_type_hints(fn, names)
    params = inspect.signature(fn).parameters
    assert set(params) <= set(hints) and "return" in hints, f"{name}: every argument and the return are typed"


@pytest.mark.parametrize("name", HOOKS + LEGACY)
def test_hook_is_documented(name):
    assert re.search(rf"^##+ `?{name}`?\b", DOCS.read_text(), re.MULTILINE), f"{name} is missing from {DOCS}"


def test_installed_plugins_implement_only_known_hooks_with_known_arguments():
    pm = get_plugin_manager()
    pm.check_pending()  # raises for an implementation of a hook that does not exist
    for hook_name in HOOKS + LEGACY:
        spec_args = set(inspect.signature(SPEC[hook_name]).parameters)
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            assert set(impl.argnames) <= spec_args, (impl.plugin_name, hook_name)


def test_a_hook_with_a_typo_is_rejected():
    pm = get_plugin_manager()

    class Typo:
        @pluggy.HookimplMarker("mmgan")
        def mmgan_build_discriminatr(self, modality, config):
            return None
    pm.register(Typo(), name="typo")
    try:
        with pytest.raises(pluggy.PluginValidationError):
            pm.check_pending()
    finally:
        pm.unregister(name="typo")


@pytest.mark.parametrize("name", HOOKS + LEGACY)
def test_hook_says_in_which_contract_version_it_was_added(name):
    from mmgan.api import CONTRACT_VERSION

    doc = inspect.getdoc(SPEC[name]) or ""
    match = re.search(r"Added in contract version (\d+)", doc)
    assert match, f"{name}: say 'Added in contract version N' in its docstring"
    assert 1 <= int(match.group(1)) <= CONTRACT_VERSION
