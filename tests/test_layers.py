"""mmgan/ is layered: each module imports only from its own layer or those below, with no import circle of any
kind (imports under TYPE_CHECKING and inside functions count), and core never imports a built-in plugin."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mmgan"
# lowest first; a module may import its own layer and the layers before it (docs/design.md draws them)
LAYERS = [
    ("foundation", ("mmgan", "mmgan.errors", "mmgan.files")),
    ("contract", ("mmgan.contract",)),
    ("config", ("mmgan.config",)),
    ("networks and files", ("mmgan.losses", "mmgan.trunk", "mmgan.checkpoint")),
    ("data", ("mmgan.data",)),
    ("evaluation", ("mmgan.evaluation",)),
    ("engine", ("mmgan.engine",)),
    ("report", ("mmgan.report",)),
    ("interfaces", ("mmgan.cli", "mmgan.api", "mmgan.testing", "mmgan.__main__", "mmgan.modality",
                    "mmgan.modality_plugin", "mmgan.compat")),
]
BUILT_IN_PLUGINS = tuple(p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").is_file())


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    found = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The mmgan modules ``name`` imports anywhere in its source (a package's submodule where one is named)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()

    def resolve(dotted: str) -> str | None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(resolve(alias.name) for alias in node.names if alias.name.split(".")[0] == "mmgan")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            if base.split(".")[0] != "mmgan":
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.add(full if full in known else resolve(base))
    targets.discard(None)
    targets.discard(name)
    return targets


def layer_of(name: str) -> int:
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    assert best is not None, f"{name} belongs to no layer: add it to LAYERS (and docs/design.md)"
    return best[0]


GRAPH = {name: imported(name, path, modules()) for name, path in modules().items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_circle_of_any_kind():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH) or [])


def test_the_circle_finder_finds_a_circle_through_a_type_only_import(tmp_path):
    package = tmp_path / "mmgan"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from mmgan.b import thing\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mmgan.a import x\n")
    known = modules(package)
    graph = {name: imported(name, path, known) for name, path in known.items()}
    assert find_cycle(graph) in (["mmgan.a", "mmgan.b", "mmgan.a"], ["mmgan.b", "mmgan.a", "mmgan.b"])


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_each_module_imports_only_its_layer_and_those_below(name):
    upward = sorted(t for t in GRAPH[name] if layer_of(t) > layer_of(name))
    assert not upward, (f"{name} ({LAYERS[layer_of(name)][0]}) imports from higher layers: "
                        + ", ".join(f"{t} ({LAYERS[layer_of(t)][0]})" for t in upward))


def test_core_never_imports_a_built_in_plugin():
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value] if node.value.split(".")[0] in BUILT_IN_PLUGINS else []
            assert not [n for n in names if n.split(".")[0] in BUILT_IN_PLUGINS], f"{name} imports {names}"


# modules that only keep an older import path working (each says where its names live now)
ALIASES = {"modality", "modality_plugin"}


def test_mmgan_keeps_few_modules_at_its_top():
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    own = [name for name in top if name not in ALIASES]
    assert len(own) <= 9 and len(top) <= 12, f"{len(top)} modules directly in mmgan/: {', '.join(top)}"
    for alias in ALIASES:
        assert "keeps working" in (PACKAGE / f"{alias}.py").read_text(encoding="utf-8").split('"""')[1], alias


def test_old_module_paths_are_the_moved_modules_themselves():
    """`import mmgan.metrics` (and hookspecs, shards) as plugins wrote it: the module at its new path, one object
    under both names, with its own spec."""
    import importlib
    import sys

    import mmgan

    for old, new in mmgan.MOVED_MODULES.items():
        module = importlib.import_module(old)
        assert module is importlib.import_module(new) is sys.modules[old]
        assert module.__name__ == module.__spec__.name == new
        assert not (PACKAGE / f"{old.removeprefix('mmgan.')}.py").exists()
    from mmgan.hookspecs import hookimpl  # noqa: F401 - the form the toy example's era used
    from mmgan.metrics import frechet_distance  # noqa: F401
    from mmgan.shards import ShardCodec  # noqa: F401


def test_the_contract_has_at_most_nine_hooks():
    from mmgan.contract import hookspecs

    specs = [name for name in vars(hookspecs) if name.startswith("mmgan_")]
    assert len(specs) <= 9, specs


# what benchmarks (and other code outside mmgan/) may import from core: the public API and the face of each
# subpackage (its __init__), never a module inside one
PUBLIC_PATHS = {"mmgan", "mmgan.api", "mmgan.errors", "mmgan.files", "mmgan.losses", "mmgan.trunk", "mmgan.checkpoint",
                "mmgan.testing", "mmgan.config", "mmgan.data", "mmgan.evaluation", "mmgan.engine", "mmgan.cli",
                "mmgan.report"}


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks").glob("*.py")), ids=lambda p: p.name)
def test_benchmarks_use_public_paths_only(path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        private = [n for n in names if n.split(".")[0] == "mmgan" and n not in PUBLIC_PATHS]
        assert not private, f"{path.name} imports {private}: use mmgan.api or a subpackage's own names"


def test_core_holds_no_built_in_plugin_s_settings():
    modalities = [name.removeprefix("mmgan_") for name in BUILT_IN_PLUGINS]
    setting = re.compile(rf"^({'|'.join(modalities)})\.\w+=")
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not setting.match(node.value), f"{name} holds the setting {node.value!r}"
