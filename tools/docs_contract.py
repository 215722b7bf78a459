"""The generated part of docs/hooks.md: the modality object's methods, the hooks, the contexts and the
per-modality hooks of contract 6, each with its signature and docstring (tools/docs.py writes it)."""

from __future__ import annotations

import inspect
import typing


def _annotation(value: typing.Any) -> str:
    return value if isinstance(value, str) else inspect.formatannotation(value)


def signature(target: typing.Any, skip_self: bool = False) -> str:
    """``(a: int, b: str = 'x') -> T`` as written in the source (annotations are strings there)."""
    sig = inspect.signature(target)
    params = []
    for p in sig.parameters.values():
        if skip_self and p.name == "self":
            continue
        text = p.name if p.kind is not p.VAR_POSITIONAL else f"*{p.name}"
        text = f"**{p.name}" if p.kind is p.VAR_KEYWORD else text
        if p.annotation is not p.empty:
            text += f": {_annotation(p.annotation)}"
        if p.default is not p.empty:
            default = "<factory>" if repr(p.default) == "<factory>" else repr(p.default)
            text += f" = {default}" if p.annotation is not p.empty else f"={default}"
        params.append(text)
    result = f"({', '.join(params)})"
    if sig.return_annotation is not sig.empty:
        result += f" -> {_annotation(sig.return_annotation)}"
    return result


def _entry(title: str, code: str, doc: str, level: str = "###") -> list[str]:
    return [f"{level} {title}", "", "```python", code, "```", "", inspect.cleandoc(doc or ""), ""]


def _hook(name: str, fn: typing.Any) -> list[str]:
    opts = getattr(fn, "mmgan_spec", {}) or {}
    kind = "first answer wins" if opts.get("firstresult") else "every answer counts"
    return _entry(name, f"def {name}{signature(fn)}", f"*{kind}*\n\n" + (inspect.getdoc(fn) or ""))


def _methods(cls: type, names: typing.Iterable[str]) -> list[str]:
    lines: list[str] = []
    for name in names:
        method = vars(cls)[name]
        target = method.fget if isinstance(method, property) else method
        code = f"{cls.__name__}.{name}" + ("" if isinstance(method, property) else signature(target, skip_self=True))
        lines += _entry(f"`{cls.__name__}.{name}`", code, inspect.getdoc(target) or "", "####")
    return lines


def _first_line(obj: typing.Any) -> str:
    return (inspect.getdoc(obj) or "").split("\n\n")[0].replace("\n", " ")


def contract_reference() -> str:
    from mmgan.contract import callbacks, contexts, hookspecs, legacy_hookspecs, modality, plugin
    from mmgan.contract.manager import MODALITY_METHODS

    parts = ["## The modality object", "", inspect.getdoc(plugin.ModalityPlugin) or "", "",
             "```python", f"class ModalityPlugin:  # {plugin.__name__}",
             "    modality: ClassVar[Modality]", "    metric_goals: ClassVar[Mapping[str, str]] = {}", "```", ""]
    parts += _methods(plugin.ModalityPlugin, MODALITY_METHODS)
    parts += ["### `Modality`", "", "```python", f"class Modality{signature(modality.Modality)}", "```", "",
              inspect.getdoc(modality.Modality) or "", ""]
    parts += ["## Hooks", "", "Where several plugins contribute. Specs: `mmgan.contract.hookspecs`.", ""]
    for name, fn in vars(hookspecs).items():
        if name.startswith("mmgan_"):
            parts += _hook(name, fn)
    parts += ["## Contexts", ""]
    for cls in (contexts.LossContext, contexts.EvalContext, contexts.ReportContext, contexts.ReportSection,
                contexts.ModalityName, callbacks.TrainingCallback):
        public = [n for n, v in vars(cls).items() if not n.startswith("_") and (inspect.isfunction(v)
                  or isinstance(v, (property, classmethod)))]
        parts += _entry(cls.__name__, f"class {cls.__name__}  # {cls.__module__}", inspect.getdoc(cls) or "")
        parts += [f"- `{n}`: {_first_line(getattr(cls, n))}" for n in public]
        parts += [""]
    parts += ["## The per-modality hooks of contract 6 (legacy)", "", inspect.getdoc(legacy_hookspecs) or "", ""]
    for name, fn in vars(legacy_hookspecs).items():
        if name.startswith("mmgan_"):
            parts += _hook(name, fn)
            parts += [f"Instead: {legacy_hookspecs.REPLACED_BY[name]}.", ""]
    return "\n".join(parts).rstrip()
