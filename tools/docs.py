"""Write the parts of the docs that code can produce, so they cannot drift from it.

    python tools/docs.py            # rewrite docs/config.md, docs/cli.md and the marked blocks
    python tools/docs.py --check    # exit 1, naming the files, if any is out of date (tests run this)

- docs/config.md: every config key of core and of the built-in modalities, with type, default and
  meaning, from the dataclasses (the meaning is the comment above each field);
- docs/cli.md: ``--help`` of every command;
- docs/api.md: the public API (``mmgan.api.__all__``), signatures and first docstring paragraphs;
- docs/hooks.md's block between ``<!-- generated: contract -->`` and ``<!-- end generated -->``: the modality
  object's methods, the hooks, the contexts and contract 6's hooks, from their signatures and docstrings;
- the ``mmgan plugins`` block in docs/plugins.md, between ``<!-- generated: mmgan plugins -->`` and
  ``<!-- end generated -->``: the output with the built-in plugins only.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import os
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

from docs_contract import signature

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BUILT_IN = ("image", "speech")


def field_comments(cls: type) -> dict[str, str]:
    """``{field: meaning}`` from the comment lines directly above each field, through the base classes."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        lines, _ = inspect.getsourcelines(klass)
        tree = ast.parse(textwrap.dedent("".join(lines)))
        body = tree.body[0].body  # the class
        for node in body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                comment, row = [], node.lineno - 2  # the line above, 0-based in ``lines``
                while row >= 0 and lines[row].strip().startswith("#"):
                    comment.insert(0, lines[row].strip().lstrip("#").strip())
                    row -= 1
                if comment:
                    found[node.target.id] = " ".join(comment)
    return found


def _type_name(tp: typing.Any) -> str:
    return getattr(tp, "__name__", None) if not typing.get_args(tp) else str(tp).replace("typing.", "")


def section_table(cls: type) -> str:
    comments = field_comments(cls)
    hints = typing.get_type_hints(cls)
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    default = cls()
    for f in dataclasses.fields(cls):
        value = getattr(default, f.name)
        shown = f"`{value!r}`".replace("|", "\\|") if value != "" else '`""`'
        meaning = comments.get(f.name, "").replace("|", "\\|")
        rows.append(f"| `{f.name}` | {_type_name(hints[f.name])} | {shown} | {meaning} |")
    return "\n".join(rows)


def config_reference() -> str:
    from mmgan.config import RunSection, TrainConfig
    from mmgan.contract.manager import get_modality
    from mmgan.trunk import TrunkConfig

    parts = [
        "# Config reference",
        "",
        "Generated from the dataclasses by `python tools/docs.py` (a test fails when this page is out of",
        "date). Every key can be set in a TOML file (`--config`), with `--set SECTION.KEY=VALUE`, and is",
        "recorded in the run's `config.toml`. A modality may suggest other `[train]` values",
        "(`Modality.train_defaults`: the image modality trains 5000 steps at batch 32); those are shown in",
        "its own section below.",
        "",
        "With `--resume RUN`, `--set` can change what does not change the networks: learning rates,",
        "betas, loss weights, intervals, `--steps`. The run goes on with the new values (Adam's moments",
        "and everything else from the checkpoint) and `config.toml` records them; a changed network size",
        "is an error that names the first mismatch.",
        "",
    ]
    for title, cls in (("[run]", RunSection), ("[train]", TrainConfig), ("[trunk]", TrunkConfig)):
        parts += [f"## `{title}`", "", inspect.getdoc(cls) or "", "", section_table(cls), ""]
    for name in BUILT_IN:
        modality = get_modality(name)
        parts += [f"## `[{name}]`", "", f"{modality.description}.", ""]
        if modality.train_defaults:
            shown = ", ".join(f"`train.{k} = {v!r}`" for k, v in modality.train_defaults.items())
            parts += [f"Suggested training settings: {shown}.", ""]
        if modality.trunk_defaults:
            shown = ", ".join(f"`trunk.{k} = {v!r}`" for k, v in modality.trunk_defaults.items())
            parts += [f"Suggested trunk settings (where modalities differ, the deepest trunk wins): {shown}.", ""]
        parts += [section_table(modality.config_class), ""]
    return "\n".join(parts).rstrip() + "\n"


def _method_lines(cls: type) -> list[str]:
    """The public methods a class defines itself, each with its signature and first docstring paragraph."""
    lines = []
    for name, value in vars(cls).items():
        if name.startswith("_") or not inspect.isfunction(value) or not inspect.getdoc(value):
            continue
        sig = signature(value)  # without self
        sig = "(" + sig[1:].split(", ", 1)[1] if sig.startswith("(self, ") else sig.replace("(self)", "()")
        doc = inspect.getdoc(value).split("\n\n")[0].replace("\n", " ")
        lines.append(f"- `{cls.__name__}.{name}{sig}`: {doc}")
    return [*lines, ""] if lines else []


def api_reference() -> str:
    import mmgan.api as api

    parts = ["# Public API", "",
             "What a plugin, a command or a metric may import: `from mmgan.api import NAME`. Generated from",
             "the objects by `python tools/docs.py` (a test fails when a public name is missing here or has no",
             "docstring). Everything not listed is internal and may change without notice; modules that",
             "plugins imported before this list existed (`mmgan.contract.modality`, `mmgan.losses`, `mmgan.errors`,",
             "...) keep their names.", "",
             f"Contract version: **{api.CONTRACT_VERSION}** (`mmgan.api.CONTRACT_VERSION`). Each hookspec in",
             "[hooks.md](hooks.md) says in which version it was added; the contract changes additively.", ""]
    for name in sorted(api.__all__, key=str.lower):
        obj = getattr(api, name)
        if not (callable(obj) and hasattr(obj, "__doc__")) or isinstance(obj, (int, str)):
            continue
        target = getattr(obj, "__wrapped__", obj)
        try:
            shown = signature(target)
        except (TypeError, ValueError):  # exceptions: no Python signature of their own
            shown = "(message)" if issubclass(target, Exception) else "(...)"
        kind = "class" if inspect.isclass(obj) else "def"
        doc = (inspect.getdoc(target) or "").split("\n\n")[0].replace("\n", " ")
        parts += [f"### `{name}`", "", "```python", f"{kind} {name}{shown}", "```", "", doc,
                  f"(`{target.__module__}`)", ""]
        if inspect.isclass(obj) and not issubclass(obj, Exception):
            parts += _method_lines(obj)
    return "\n".join(parts).rstrip() + "\n"


def _command_help(args: list[str]) -> str:
    from click.testing import CliRunner

    from mmgan.cli.commands import build_cli

    result = CliRunner().invoke(build_cli(), [*args, "--help"], prog_name="mmgan", terminal_width=100)
    return result.output.rstrip()


def cli_reference() -> str:
    from mmgan.cli.commands import build_cli

    cli = build_cli()
    parts = ["# Command-line reference", "",
             "Generated by `python tools/docs.py` from the commands themselves (with the built-in plugins;",
             "a test fails when this page is out of date).", ""]
    commands: list[list[str]] = [[]]
    for name, command in sorted(cli.commands.items()):
        commands.append([name])
        for sub in sorted(getattr(command, "commands", {}) or {}):
            commands.append([name, sub])
    for args in commands:
        title = " ".join(["mmgan", *args])
        parts += [f"## `{title}`", "", "```", f"$ {title} --help", _command_help(args), "```", ""]
    return "\n".join(parts).rstrip() + "\n"


def plugins_output() -> str:
    env = {**os.environ, "MMGAN_PLUGINS": ",".join(BUILT_IN), "COLUMNS": "100"}
    out = subprocess.run([sys.executable, "-m", "mmgan", "plugins"], capture_output=True, text=True, env=env,
                         check=True).stdout
    return "```\n$ mmgan plugins\n" + out.rstrip() + "\n```"


def replace_block(text: str, name: str, content: str, path: Path) -> str:
    start, end = f"<!-- generated: {name} -->", "<!-- end generated -->"
    if start not in text:
        raise SystemExit(f"{path}: no '{start}' marker")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{content}\n{end}{tail}"


def expected() -> dict[Path, str]:
    from docs_contract import contract_reference

    plugins_md, hooks_md = DOCS / "plugins.md", DOCS / "hooks.md"
    return {
        hooks_md: replace_block(hooks_md.read_text(encoding="utf-8"), "contract", contract_reference(), hooks_md),
        DOCS / "config.md": config_reference(),
        DOCS / "api.md": api_reference(),
        DOCS / "cli.md": cli_reference(),
        plugins_md: replace_block(plugins_md.read_text(encoding="utf-8"), "mmgan plugins", plugins_output(),
                                  plugins_md),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that are out of date")
    args = parser.parse_args()
    stale = []
    for path, text in expected().items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(path)
            if not args.check:
                path.write_text(text, encoding="utf-8")
    if args.check and stale:
        names = ", ".join(str(p.relative_to(ROOT)) for p in stale)
        print(f"out of date: {names}; run python tools/docs.py", file=sys.stderr)
        return 1
    if not args.check:
        print("up to date" if not stale else f"wrote {len(stale)} file(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
