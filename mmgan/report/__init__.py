"""``mmgan report``: a static HTML report of one run, or of several side by side, that opens from disk.

Core shows what knows no modality (the config, the run's facts from run.json, every logged curve, the
evaluations with the best step marked); each modality's samples come from its plugin through the
``mmgan_report_section`` hook (:mod:`mmgan.report.section`). The report reads the runs and writes only
its own directory, built under a temporary name and renamed into place, so a run still training can be
reported at any time and a reader never sees half a report. Plots need matplotlib (the ``report`` extra).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mmgan.files import writing
from mmgan.report.data import ReportError, read_run
from mmgan.report.section import ReportContext, ReportGroup, ReportItem, ReportSection

if TYPE_CHECKING:
    import pluggy

__all__ = ["ReportContext", "ReportError", "ReportGroup", "ReportItem", "ReportSection", "write_report"]

# the file that marks a directory as a report mmgan wrote, which a new report may replace
MARKER = ".mmgan-report"


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ReportError("mmgan report draws its curves with matplotlib, which is not installed: "
                          "pip install 'mmgan[report]'") from None


def write_report(runs: Sequence[str | Path], out: str | Path | None = None,
                 pm: pluggy.PluginManager | None = None) -> Path:
    """Write the report of ``runs`` (one run, or several compared) to ``out`` (default ``RUN/report``
    for one run); returns the path of its index.html."""
    from mmgan.contract.manager import get_plugin_manager
    from mmgan.report.render import render_report

    if not runs:
        raise ReportError("give at least one run directory")
    require_matplotlib()
    paths = [Path(r) for r in runs]
    if out is None:
        if len(paths) > 1:
            raise ReportError(f"a report of {len(paths)} runs needs -o DIR (where to write it)")
        out = paths[0] / "report"
    out = Path(out)
    data = [read_run(p, label) for p, label in zip(paths, run_labels(paths), strict=True)]
    check_output(out)
    staging = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        with writing(out):
            staging.mkdir(parents=True)
            render_report(data, staging, pm or get_plugin_manager())
            (staging / MARKER).write_text("mmgan report\n", encoding="utf-8")
            replace_directory(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "index.html"


def run_labels(paths: list[Path]) -> list[str]:
    """Each run's name in the report: its directory's name, or the path as given where names repeat."""
    names = [p.resolve().name for p in paths]
    return [name if names.count(name) == 1 else str(path) for name, path in zip(names, paths, strict=True)]


def check_output(out: Path) -> None:
    """``out`` may be new, empty, or a report written before (replaced); anything else is refused."""
    if out.exists() and not out.is_dir():
        raise ReportError(f"-o {out} is a file; give a directory for the report")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ReportError(f"-o {out} holds files that are not an mmgan report; choose a new or empty directory")


def replace_directory(new: Path, target: Path) -> None:
    """Put ``new`` at ``target``: a rename, with an existing report moved aside first and then removed."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.old")
        os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
