"""The plugin contract: every hook is typed, documented here and in docs/, and built-ins honour it."""

import inspect
import re
import typing
from pathlib import Path

import pluggy
import pytest

from mmgan.contract import hookspecs
from mmgan.contract.manager import get_plugin_manager

HOOKS = sorted(name for name, fn in vars(hookspecs).items()
               if name.startswith("mmgan_") and inspect.isfunction(fn))
DOCS = Path(__file__).resolve().parent.parent / "docs" / "hooks.md"


def test_the_contract_has_every_capability():
    assert set(HOOKS) >= {
        "mmgan_register_modalities", "mmgan_build_generator", "mmgan_build_discriminator",
        "mmgan_register_losses", "mmgan_generator_loss_terms", "mmgan_discriminator_loss_terms",
        "mmgan_read_data", "mmgan_write_samples", "mmgan_register_commands", "mmgan_evaluate",
    }


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_typed_and_says_when_it_is_called(name):
    fn = getattr(hookspecs, name)
    doc = inspect.getdoc(fn) or ""
    assert re.search(r"\bcalled\b", doc, re.IGNORECASE), f"{name}: docstring must say when it is called"
    hints = typing.get_type_hints(fn, vars(hookspecs) | vars(__import__("mmgan.losses").losses)
                                  | vars(__import__("mmgan.contract.modality").modality)
                                  | vars(__import__("mmgan.data.shards").shards)
                                  | vars(__import__("mmgan.evaluation").evaluation))
    params = inspect.signature(fn).parameters
    assert set(params) <= set(hints) and "return" in hints, f"{name}: every argument and the return are typed"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented(name):
    assert re.search(rf"^##+ `?{name}`?\b", DOCS.read_text(), re.MULTILINE), f"{name} is missing from {DOCS}"


def test_installed_plugins_implement_only_known_hooks_with_known_arguments():
    pm = get_plugin_manager()
    pm.check_pending()  # raises for an implementation of a hook that does not exist
    for hook_name in HOOKS:
        spec_args = set(inspect.signature(getattr(hookspecs, hook_name)).parameters)
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


@pytest.mark.parametrize("name", HOOKS)
def test_hook_says_in_which_contract_version_it_was_added(name):
    from mmgan.api import CONTRACT_VERSION

    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    match = re.search(r"Added in contract version (\d+)", doc)
    assert match, f"{name}: say 'Added in contract version N' in its docstring"
    assert 1 <= int(match.group(1)) <= CONTRACT_VERSION
