"""Reading a run directory for the report, and nothing else: config.toml, run.json (the facts the engine
recorded when the run started and ended), metrics.jsonl and the best exports. A run still training is
read as it stands: a half-written last line of metrics.jsonl is left out, files being written are not
seen (they have hidden temporary names)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mmgan.config.values import read_toml
from mmgan.errors import ConfigError, MMGANError

UNKNOWN = "unknown"
CORE_SECTIONS = ("run", "train", "trunk")


class ReportError(MMGANError):
    """A report that cannot be made: no run at the path, an output directory that holds something else."""


@dataclass
class Series:
    """One logged name over steps: ``image/g/adv``, ``image/eval/fd``, ``steps_per_s``."""

    name: str
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    @property
    def group(self) -> str:
        """The modality (``image``) for ``image/...`` names, ``run`` for the others."""
        return self.name.split("/", 1)[0] if "/" in self.name else "run"

    @property
    def is_eval(self) -> bool:
        return self.name.split("/")[1:2] == ["eval"]

    @property
    def short(self) -> str:
        """The name without its modality and ``eval``: ``g/adv``, ``fd``."""
        parts = self.name.split("/")
        if len(parts) > 1:
            parts = parts[2:] if self.is_eval else parts[1:]
        return "/".join(parts)


@dataclass
class RunData:
    """What the report shows of one run."""

    path: Path
    label: str
    config: dict[str, dict[str, Any]]
    config_text: str
    facts: dict[str, Any]  # run.json; {} for runs written before it existed
    series: dict[str, Series]
    best: dict[str, dict[str, Any]]  # modality -> {"metric", "goal", "value", "step"}
    # why config.toml or run.json, present, could not be read ("" when they could, or are absent)
    config_error: str = ""
    facts_error: str = ""

    @property
    def modalities(self) -> list[str]:
        listed = self.config.get("run", {}).get("modalities")
        if isinstance(listed, list) and listed:
            return [str(m) for m in listed]
        found = [n for n in self.config if n not in CORE_SECTIONS]
        samples = self.path / "samples"
        if samples.is_dir():
            found += sorted(p.name for p in samples.iterdir() if p.is_dir() and p.name not in found)
        return found

    @property
    def last_step(self) -> int | None:
        steps = [s for series in self.series.values() for s in series.steps[-1:]]
        if isinstance(self.facts.get("step"), int):
            steps.append(self.facts["step"])
        return max(steps) if steps else None

    @property
    def seed(self) -> int:
        seed = self.config.get("run", {}).get("seed", 0)
        return seed if isinstance(seed, int) else 0

    @property
    def processes(self) -> int:
        n = self.facts.get("processes")
        return n if isinstance(n, int) and n > 0 else 1

    @property
    def ended(self) -> bool:
        return bool(self.facts.get("ended"))

    def eval_table(self, modality: str) -> tuple[list[str], list[tuple[int, list[float | None]]]]:
        """``(metric names, [(step, values)])`` of the modality's evaluations, oldest first."""
        evals = [s for s in self.series.values() if s.group == modality and s.is_eval]
        names = [s.short for s in evals]
        rows: dict[int, list[float | None]] = {}
        for i, series in enumerate(evals):
            for step, value in zip(series.steps, series.values, strict=True):
                rows.setdefault(step, [None] * len(evals))[i] = value
        return names, sorted(rows.items())

    def facts_rows(self) -> list[tuple[str, str]]:
        """The run's facts for a table, ``unknown`` where run.json (or the key) is missing."""
        f = self.facts

        def get(key: str) -> str:
            value = f.get(key)
            return UNKNOWN if value is None or value == "" else str(value)

        plugins = f.get("plugins")
        plugin_text = (", ".join(f"{name} {version}" for name, version in plugins.items())
                       if isinstance(plugins, dict) and plugins else UNKNOWN)
        configured = self.config.get("train", {}).get("steps")
        last = self.last_step
        steps = f"{last if last is not None else UNKNOWN} of {configured if configured is not None else UNKNOWN}"
        sessions = f.get("sessions")
        rows = [("status", self.status()), ("modalities", ", ".join(self.modalities) or UNKNOWN),
                ("steps", steps), ("started", get("started")),
                ("ended", get("ended") if f.get("ended") else ("not yet: training, or stopped without an end"
                                                                if f else UNKNOWN)),
                ("time", self.duration()), ("processes", get("processes")), ("device", get("device")),
                ("precision", get("precision")), ("host", get("host")), ("seed", str(self.seed)),
                ("mmgan", get("mmgan_version")), ("plugins", plugin_text), ("torch", get("torch")),
                ("accelerate", get("accelerate")), ("python", get("python"))]
        if isinstance(sessions, list) and len(sessions) > 1:
            rows.insert(3, ("sessions", f"{len(sessions)} (started, then resumed {len(sessions) - 1} time(s))"))
        first = sessions[0] if isinstance(sessions, list) and sessions and isinstance(sessions[0], dict) else {}
        rows.append(("command", str(first.get("command") or UNKNOWN)))
        return rows

    def status(self) -> str:
        status = self.facts.get("status")
        if self.facts_error:
            return UNKNOWN + f" (run.json cannot be read: {self.facts_error})"
        if not self.facts:
            return UNKNOWN + " (no run.json: a run written before mmgan recorded its facts)"
        if self.facts.get("ended"):
            return str(status or "finished")
        return f"{status or 'running'} (not ended: still training, or stopped without an end)"

    def duration(self) -> str:
        started, ended = parse_time(self.facts.get("started")), parse_time(self.facts.get("ended"))
        if started is None or ended is None:
            return UNKNOWN
        seconds = max(0.0, (ended - started).total_seconds())
        hours, rest = divmod(int(round(seconds)), 3600)
        return f"{hours}:{rest // 60:02d}:{rest % 60:02d} (h:mm:ss)"


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def read_run(path: Path, label: str | None = None) -> RunData:
    """Read the run at ``path``; a ReportError when it holds no run."""
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path} is not a run directory (it does not exist or is a file)")
    toml_path, metrics_path = path / "config.toml", path / "metrics.jsonl"
    if not toml_path.is_file() and not metrics_path.is_file():
        raise ReportError(f"{path} holds no run: no config.toml and no metrics.jsonl")
    config, text, config_error = {}, "", ""
    if toml_path.is_file():
        text = toml_path.read_text(encoding="utf-8", errors="replace")
        try:
            config = read_toml(toml_path)
        except ConfigError as exc:  # shown as text, and said so; the rest of the report does not need it
            config, config_error = {}, str(exc)
    facts, facts_error = read_json(path / "run.json") or {}, ""
    if not facts and (path / "run.json").is_file():
        facts_error = _json_problem(path / "run.json")
    modalities = [m for m in config.get("run", {}).get("modalities", []) if isinstance(m, str)]
    return RunData(path=path, label=label or path.resolve().name, config=config, config_text=text,
                   facts=facts, series=read_metrics(metrics_path), best=read_best(path, modalities),
                   config_error=config_error, facts_error=facts_error)


def _json_problem(path: Path) -> str:
    """Why ``path`` holds no JSON object, in a few words."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    return f"it holds a {type(value).__name__}, not an object"


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is missing, unreadable or not an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_metrics(path: Path) -> dict[str, Series]:
    """Every numeric name of metrics.jsonl as a series; lines that do not parse (the one a running
    training is writing) are left out."""
    found: dict[str, Series] = {}
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return found
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        step = record.get("step") if isinstance(record, dict) else None
        if not isinstance(step, int):
            continue
        for name, value in record.items():
            if name == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            series = found.setdefault(name, Series(name))
            series.steps.append(step)
            series.values.append(float(value) if math.isfinite(value) else math.nan)
    return found


def read_best(path: Path, modalities: list[str]) -> dict[str, dict[str, Any]]:
    """Each modality's best export as the run recorded it: ``export/best/<modality>.json``'s
    ``selected_by``, else the newest checkpoint's ``mmgan_progress.json``."""
    best: dict[str, dict[str, Any]] = {}
    for name in modalities:
        meta = read_json(path / "export" / "best" / f"{name}.json") or {}
        if isinstance(meta.get("selected_by"), dict) and "step" in meta["selected_by"]:
            best[name] = meta["selected_by"]
    checkpoints = path / "checkpoints"
    if checkpoints.is_dir():
        newest = sorted((p for p in checkpoints.iterdir() if p.name.startswith("step_") and p.name[5:].isdigit()),
                        key=lambda p: int(p.name[5:]))
        for directory in reversed(newest):
            progress = read_json(directory / "mmgan_progress.json")
            if progress is None:
                continue
            for name, entry in (progress.get("best") or {}).items():
                if isinstance(entry, dict) and "step" in entry:
                    best.setdefault(name, entry)
            break
    return best


def flat_config(config: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``{"section.key": value}``."""
    return {f"{section}.{key}": value for section, values in config.items() if isinstance(values, dict)
            for key, value in values.items()}


def config_differences(runs: list[RunData]) -> list[tuple[str, list[str]]]:
    """The config keys whose values differ between runs (``run.out`` aside: every run has its own), with
    each run's value as text (``-`` where a run has no such key)."""
    flats = [flat_config(run.config) for run in runs]
    keys = sorted({key for flat in flats for key in flat} - {"run.out"})
    missing = object()
    rows = []
    for key in keys:
        values = [flat.get(key, missing) for flat in flats]
        if any(v != values[0] for v in values[1:]):
            rows.append((key, ["-" if v is missing else format_value(v) for v in values]))
    return rows


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)
