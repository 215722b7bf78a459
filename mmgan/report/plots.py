"""The report's curves, drawn with matplotlib (the ``report`` extra): every logged name over steps, one
small panel per name, several runs overlaid in their own colours, each run's best step marked on its
evaluation metrics. Figures are drawn without pyplot, so no global state and no display is touched."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from mmgan.report.data import RunData, Series

# a palette readable on white and by most colour-blind readers (Okabe and Ito)
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
PANEL_COLUMNS = 3
SMOOTH_ABOVE = 60  # points: longer series are drawn faintly, with a moving average over them
# panels in one picture at most: a run that logs thousands of names (a plugin's per-class terms, say) gets
# the first of each group drawn and the rest counted, so the report stays bounded in time and memory
MAX_PANELS = 24


@dataclass(frozen=True)
class Plot:
    """One picture of the report: the panels of one group (a modality's losses, its metrics)."""

    group: str
    kind: str  # "losses", "metrics" or "run"
    title: str
    path: Path
    names: tuple[str, ...]


def draw_curves(runs: list[RunData], out_dir: Path) -> list[Plot]:
    """Every curve of ``runs`` as PNGs in ``out_dir``: per modality its losses and its metrics, then the
    names of no modality (steps_per_s)."""
    groups = list(dict.fromkeys([*(m for run in runs for m in run.modalities),
                                 *(s.group for run in runs for s in run.series.values())]))
    groups = [g for g in groups if g != "run"] + ["run"]
    plots = []
    for group in groups:
        for kind in ("losses", "metrics"):
            if group == "run" and kind == "metrics":
                continue
            names = list(dict.fromkeys(s.short for run in runs for s in run.series.values()
                                       if s.group == group and s.is_eval == (kind == "metrics")))
            if not names:
                continue
            name = "run" if group == "run" else kind
            title = "throughput and other values" if group == "run" else f"{group}: {kind}"
            if len(names) > MAX_PANELS:
                title += f" (the first {MAX_PANELS} of {len(names)} names; all are in metrics.jsonl)"
                names = names[:MAX_PANELS]
            path = out_dir / f"{group}_{name}.png"
            draw_panels(runs, group, kind == "metrics", names, path)
            plots.append(Plot(group, "run" if group == "run" else kind, title, path, tuple(names)))
    return plots


def draw_panels(runs: list[RunData], group: str, evals: bool, names: list[str], path: Path) -> None:
    from matplotlib.figure import Figure

    columns = min(PANEL_COLUMNS, len(names))
    rows = math.ceil(len(names) / columns)
    figure = Figure(figsize=(4.2 * columns, 2.8 * rows), dpi=90, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    from matplotlib.ticker import MaxNLocator

    # each run's series of this picture by name, found once (a lookup per panel was quadratic in the names)
    found = [{s.short: s for s in run.series.values() if s.group == group and s.is_eval == evals} for run in runs]
    for number, (ax, name) in enumerate(zip(axes, names, strict=False)):
        for index, run in enumerate(runs):
            series = found[index].get(name)
            if series is None or not series.steps:
                continue
            colour = COLOURS[index % len(COLOURS)]
            label = run.label if len(runs) > 1 else None
            draw_series(ax, series, colour, label, markers=evals)
            best = run.best.get(group) if evals else None
            if best is not None:
                mark_best(ax, series, best, colour, is_metric=best.get("metric") == name)
            mark_collapses(ax, run, group, colour)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if len(runs) > 1 and number == 0:  # one legend per picture: the runs' colours are the same in every panel
            ax.legend(fontsize=7)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # a run name in a script the font lacks (漢) is drawn as boxes: not worth
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")  # two lines of stderr per glyph
        figure.savefig(path, format="png")


def draw_series(ax, series: Series, colour: str, label: str | None, markers: bool) -> None:  # noqa: ANN001
    steps, values = series.steps, series.values
    if len(steps) > SMOOTH_ABOVE:
        ax.plot(steps, values, color=colour, alpha=0.25, linewidth=0.8)
        ax.plot(steps, moving_average(values, max(3, len(values) // 30)), color=colour, linewidth=1.5,
                label=label)
    else:
        ax.plot(steps, values, color=colour, linewidth=1.5, marker="o" if markers else None, markersize=3,
                label=label)


def mark_best(ax, series: Series, best: dict, colour: str, is_metric: bool) -> None:  # noqa: ANN001
    """A dashed line at the best step on every metric panel; on the selecting metric, a star and its value."""
    step = best.get("step")
    if not isinstance(step, int):
        return
    ax.axvline(step, color=colour, linestyle="--", linewidth=1, alpha=0.7)
    if is_metric and step in series.steps:
        value = series.values[series.steps.index(step)]
        ax.plot([step], [value], marker="*", markersize=13, color=colour, markeredgecolor="black", zorder=5)
        ax.annotate(f"best: step {step}", (step, value), textcoords="offset points", xytext=(6, 6), fontsize=8)


def mark_collapses(ax, run: RunData, group: str, colour: str) -> None:  # noqa: ANN001
    """A dotted red line at each step where the collapse watchdog found a collapse of ``group``, and a
    dash-dotted one where a rollback went back to."""
    for found in run.facts.get("collapse", []) if isinstance(run.facts, dict) else []:
        if isinstance(found, dict) and found.get("modality") == group and isinstance(found.get("step"), int):
            ax.axvline(found["step"], color="red", linestyle=":", linewidth=1.2, alpha=0.8)
            ax.annotate("collapse", (found["step"], 1), xycoords=("data", "axes fraction"), fontsize=7,
                        color="red", xytext=(2, -10), textcoords="offset points")
    for back in run.facts.get("rollbacks", []) if isinstance(run.facts, dict) else []:
        if isinstance(back, dict) and isinstance(back.get("to_step"), int):
            ax.axvline(back["to_step"], color=colour, linestyle="-.", linewidth=1, alpha=0.6)


def moving_average(values: list[float], window: int) -> list[float]:
    """The mean of the last ``window`` finite values at each point (NaNs left out)."""
    out, recent = [], []
    for value in values:
        if math.isfinite(value):
            recent.append(value)
        recent = recent[-window:]
        out.append(sum(recent) / len(recent) if recent else math.nan)
    return out
