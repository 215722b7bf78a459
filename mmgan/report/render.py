"""Lay a report out: the plugins' sections (``mmgan_report_section``), the curves, the facts and the config
of each run, rendered by the Jinja2 templates beside this module into one directory that opens from disk."""

from __future__ import annotations

import datetime
import functools
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pluggy

from mmgan import __version__
from mmgan.config.values import section_from_dict
from mmgan.contract import calls
from mmgan.contract.contexts import ModalityName, ReportContext, ReportGroup, ReportSection
from mmgan.contract.manager import get_modality, get_plugin_manager
from mmgan.errors import MMGANError
from mmgan.report.data import UNKNOWN, RunData, config_differences, format_value
from mmgan.report.plots import Plot, draw_curves
from mmgan.report.trust import trust_section

if TYPE_CHECKING:
    import torch

log = logging.getLogger("mmgan")
HERE = Path(__file__).resolve().parent
STATIC_FILES = ("report.css", "report.js")


class MediaFiles:
    """Turns the files of a section into links relative to the report: a file already in the report (one
    the plugin wrote) is linked where it is, any other (the run's own sample files) is copied in first."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.copied: dict[Path, Path] = {}

    def href(self, path: Path, into: Path) -> str:
        source = Path(path).resolve()
        if source.is_relative_to(self.root):
            target = source
        elif source in self.copied:
            target = self.copied[source]
        else:
            into.mkdir(parents=True, exist_ok=True)
            target = into / source.name
            n = 1
            while target.exists():
                n += 1
                target = into / f"{source.stem}_{n}{source.suffix}"
            shutil.copyfile(source, target)
            self.copied[source] = target = target.resolve()
        return quote(target.relative_to(self.root).as_posix())


@dataclass
class SectionView:
    """One plugin's section for one run, with links instead of paths (or a note instead of a section)."""

    id: str
    title: str
    layout: str = "slider"
    text: str = ""
    highlights: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""


def modality_config(name: str, values: dict[str, Any] | None, pm: pluggy.PluginManager) -> Any:
    """The modality's config dataclass from the run's ``[name]`` section, or None (not installed, or a
    section this version cannot read)."""
    try:
        return section_from_dict(get_modality(name, pm).config_class, values or {}, f"[{name}]")
    except MMGANError:
        return None


def _modality_name(name: str, pm: pluggy.PluginManager) -> ModalityName:
    try:
        return ModalityName(get_modality(name, pm))
    except MMGANError:  # not installed here: the report says so in its section
        return ModalityName(name)


def read_real_samples(ctx: ReportContext, n: int) -> torch.Tensor | None:
    """The first ``n`` real samples, as the run's sample files showed them beside the generated ones (read
    again from the run's data source). None when the source cannot be read here (moved, another machine)."""
    import torch

    from mmgan.data.loading import open_training_data
    from mmgan.data.shards import ShardStream

    if ctx.config is None:
        return None
    try:
        train = ctx.settings.get("train", {})  # how the run split its shards, so the preview is the same
        dataset = open_training_data(ctx.pm or get_plugin_manager(), ctx.modality, ctx.config, ctx.seed, 0,
                                     ctx.processes, int(train.get("num_workers", 0)),
                                     int(train.get("shuffle_buffer", 512)))
        count = min(n, len(dataset))
        if isinstance(dataset, ShardStream):
            return torch.stack(dataset.preview(count))
        return torch.stack([dataset[i] for i in range(count)])
    except (MMGANError, OSError, ValueError) as exc:
        log.info("report: no real %s samples from %s: %s", ctx.modality, getattr(ctx.config, "data", "?"), exc)
        return None


def plugin_sections(run: RunData, index: int, root: Path, media: MediaFiles,
                    pm: pluggy.PluginManager) -> dict[str, list[SectionView]]:
    """``{modality: sections}`` that the installed plugins give for ``run``."""
    found: dict[str, list[SectionView]] = {}
    for name in run.modalities:
        out_dir = root / "media" / f"run{index + 1}" / name
        ctx = ReportContext(modality=_modality_name(name, pm), config=modality_config(name, run.config.get(name), pm),
                            run_dir=run.path, out_dir=out_dir, steps=[], best=run.best.get(name),
                            last_step=run.last_step, settings=run.config, seed=run.seed, processes=run.processes,
                            pm=pm)
        ctx.read_real = functools.partial(read_real_samples, ctx)
        ctx.steps = sorted({int(p.stem[len("step_"):]) for p in _sample_paths(ctx)})
        base = f"r{index + 1}-{name}"
        try:
            answers = calls.report_sections(ctx, pm)
        except (MMGANError, OSError) as exc:
            found[name] = [SectionView(base, name, note=f"its section could not be made: {exc}")]
            continue
        if not answers:
            note = (f"no installed plugin shows {name} samples (report_section); "
                    f"they are in {run.path / 'samples' / name}")
            found[name] = [SectionView(base, name, note=note)]
            continue
        found[name] = [section_view(section, f"{base}-{i}", out_dir, media) for i, section in enumerate(answers)]
    for name in run.modalities:  # core's own: collapses found, the memorisation check, the exploration
        extra = trust_section(run.path, name, run.facts)
        if extra is not None:
            found.setdefault(name, []).append(section_view(extra, f"r{index + 1}-{name}-trust",
                                                           root / "media" / f"run{index + 1}" / name, media))
    return found


def _sample_paths(ctx: ReportContext) -> list[Path]:
    """The files named ``step_NNNNNN.*`` in the modality's samples directory."""
    if not ctx.samples_dir.is_dir():
        return []
    return [p for p in ctx.samples_dir.iterdir()
            if p.is_file() and p.stem.startswith("step_") and p.stem[5:].isdigit() and not p.name.startswith(".")]


def section_view(section: ReportSection, id_: str, out_dir: Path, media: MediaFiles) -> SectionView:
    def group_view(group: ReportGroup) -> dict[str, Any]:
        items = []
        for item in group.items:
            try:
                items.append({"caption": item.caption,
                              "image": media.href(item.image, out_dir) if item.image else None,
                              "audio": media.href(item.audio, out_dir) if item.audio else None})
            except OSError as exc:  # a file gone since the plugin listed it: leave the item out
                log.warning("report: %s left out: %s", item.caption, exc)
                continue
        return {"title": group.title, "step": group.step, "columns": max(1, group.columns), "items": items}

    return SectionView(id=id_, title=section.title, layout=section.layout, text=section.text,
                       highlights=[group_view(g) for g in section.highlights],
                       groups=[group_view(g) for g in section.groups])


def run_view(run: RunData) -> dict[str, Any]:
    sections = []
    for name, values in run.config.items():
        if isinstance(values, dict):
            sections.append((name, [(key, format_value(value)) for key, value in values.items()]))
    evals = {}
    for name in run.modalities:
        metrics, rows = run.eval_table(name)
        if metrics:
            best = run.best.get(name) or {}
            evals[name] = {"metrics": metrics, "rows": rows, "best_step": best.get("step"),
                           "best_metric": best.get("metric"), "goal": best.get("goal")}
    return {"label": run.label, "path": str(run.path), "config": sections,
            "config_text": run.config_text, "config_error": run.config_error, "evals": evals, "best": run.best}


def render_report(runs: list[RunData], root: Path, pm: pluggy.PluginManager) -> Path:
    """Write the whole report of ``runs`` into the empty directory ``root``; returns index.html."""
    import jinja2

    media = MediaFiles(root)
    sections = [plugin_sections(run, i, root, media, pm) for i, run in enumerate(runs)]
    plots = draw_curves(runs, root / "plots")
    assets = root / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    for name in STATIC_FILES:
        shutil.copyfile(HERE / "static" / name, assets / name)
    modalities = list(dict.fromkeys(m for run in runs for m in run.modalities))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["number"] = format_number
    page = env.get_template("index.html.j2").render(
        title=("mmgan report: " + runs[0].label) if len(runs) == 1 else f"mmgan report: {len(runs)} runs",
        runs=[run_view(run) for run in runs],
        facts=fact_rows(runs),
        differences=config_differences(runs) if len(runs) > 1 else [],
        plots=[plot_view(plot, root) for plot in plots],
        modalities=[{"name": m, "runs": [s.get(m, []) for s in sections],
                     "has_evals": any(run.eval_table(m)[0] for run in runs)} for m in modalities],
        generated=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        version=__version__, unknown=UNKNOWN,
    )
    index = root / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def fact_rows(runs: list[RunData]) -> dict[str, Any]:
    """``{"rows": [(fact, [value per run])], "unrecorded": [fact]}``: facts no run recorded are named in one
    line instead of a row of "unknown" each (runs written before run.json)."""
    per_run = [dict(run.facts_rows()) for run in runs]
    rows, unrecorded = [], []
    for name in per_run[0]:
        values = [facts.get(name, UNKNOWN) for facts in per_run]
        if all(value == UNKNOWN for value in values):
            unrecorded.append(name)
        else:
            rows.append((name, values))
    return {"rows": rows, "unrecorded": unrecorded}


def plot_view(plot: Plot, root: Path) -> dict[str, Any]:
    return {"group": plot.group, "kind": plot.kind, "title": plot.title, "names": list(plot.names),
            "href": quote(plot.path.relative_to(root).as_posix())}


def format_number(value: float | None) -> str:
    if value is None:
        return ""
    if value != value:  # NaN
        return "nan"
    return f"{value:.4g}"
