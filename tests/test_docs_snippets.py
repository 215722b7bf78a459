"""The Python in the docs cannot drift from the code: every ```python block of the hand-written pages parses,
imports only names that exist, implements only hooks the contract has, and runs on its own with every name it
uses imported or defined; the entry points docs/plugins.md shows are the example plugin's."""

from __future__ import annotations

import ast
import builtins
import dis
import importlib
import re
import sys
import types
from pathlib import Path

import pytest
import tomllib

from mmgan.contract import hookspecs, legacy_hookspecs

ROOT = Path(__file__).resolve().parent.parent
# api.md and hooks.md are generated from the code (tools/docs.py); the others are written by hand
PAGES = sorted(p for p in (ROOT / "docs").rglob("*.md") if p.name not in ("api.md",)) + [ROOT / "README.md"]
HOOKS = {n for n in [*vars(hookspecs), *vars(legacy_hookspecs)] if n.startswith("mmgan_")}


def python_blocks(page: Path) -> list[tuple[int, str]]:
    """The ```python blocks of ``page`` with their line numbers, outside its generated parts (signatures made
    from the code by tools/docs.py, not code to run)."""
    text = re.sub(r"<!-- generated: .*?<!-- end generated -->", lambda m: "\n" * m.group(0).count("\n"),
                  page.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [(text[:m.start()].count("\n") + 1, m.group(1))
            for m in re.finditer(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)]


BLOCKS = [(page, line, code) for page in PAGES for line, code in python_blocks(page)]


@pytest.mark.parametrize(("page", "line", "code"), BLOCKS,
                         ids=[f"{p.relative_to(ROOT)}:{n}" for p, n, _ in BLOCKS])
def test_a_python_block_parses_imports_what_exists_and_implements_real_hooks(page, line, code):
    where = f"{page.relative_to(ROOT)}:{line}"
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise AssertionError(f"{where}: {exc}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mmgan":
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{where}: {node.module} has no {alias.name}"
        if isinstance(node, ast.FunctionDef) and node.name.startswith("mmgan_"):
            marked = any("hookimpl" in ast.unparse(d) for d in node.decorator_list)
            assert not marked or node.name in HOOKS, f"{where}: {node.name} is no hook of the contract"


def global_names(code: types.CodeType) -> set[str]:
    """The global names ``code`` and the functions and classes inside it read when they run."""
    names = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= global_names(const)
    return names


@pytest.mark.parametrize(("page", "line", "code"), BLOCKS,
                         ids=[f"{p.relative_to(ROOT)}:{n}" for p, n, _ in BLOCKS])
def test_a_python_block_runs_on_its_own_and_every_name_it_uses_is_defined(page, line, code, monkeypatch):
    """Each block is a piece of a plugin module a reader can copy: it runs as it is (with the toy example, which
    some blocks import from, on the path), and every name its functions read when called is imported or
    defined in it."""
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "mmgan-toy-plugin"))
    where = f"{page.relative_to(ROOT)}:{line}"
    compiled = compile(code, where, "exec")
    module = types.ModuleType("docs_block")  # a module of its own (dataclasses look theirs up)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compiled, module.__dict__)  # noqa: S102 - the docs' own code, the point of the test
    namespace = module.__dict__
    missing = sorted(n for n in global_names(compiled) if n not in namespace and not hasattr(builtins, n))
    assert not missing, f"{where}: uses {', '.join(missing)} without importing or defining it"


def test_the_entry_points_plugins_md_shows_are_the_example_s():
    page = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    shown = re.search(r"```toml\n(.*?)```", page, re.DOTALL).group(1)
    example = tomllib.loads((ROOT / "examples" / "mmgan-toy-plugin" / "pyproject.toml").read_text())
    shown_points = tomllib.loads(shown)["project"]["entry-points"]["mmgan"]
    assert shown_points == example["project"]["entry-points"]["mmgan"]
