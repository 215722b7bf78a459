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
    out = Path(out).resolve()  # `-o .` has no name of its own
    data = [read_run(p, label) for p, label in zip(paths, run_labels(paths), strict=True)]
    check_output(out)
    staging = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        with writing(out):
            staging.mkdir(parents=True)
            render_report(data, staging, pm or get_plugin_manager())
            # the marker lists every file the report wrote: the next report replaces those, never yours
            written = sorted(str(f.relative_to(staging)) for f in staging.rglob("*") if f.is_file())
            (staging / MARKER).write_text("\n".join(["mmgan report", *written]) + "\n", encoding="utf-8")
            replace_directory(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "index.html"


def run_labels(paths: list[Path]) -> list[str]:
    """Each run's name in the report: its directory's name, or the path as given where names repeat."""
    names = [p.resolve().name for p in paths]
    return [name if names.count(name) == 1 else str(path) for name, path in zip(names, paths, strict=True)]


def check_output(out: Path) -> None:
    """``out`` may be new, empty, or a report written before (replaced); anything else is refused, and so is
    a report folder holding files the report did not write (yours: they are never deleted)."""
    if out.exists() and not out.is_dir():
        raise ReportError(f"-o {out} is a file; give a directory for the report")
    if not (out.is_dir() and any(out.iterdir())):
        return
    if not (out / MARKER).is_file():
        raise ReportError(f"-o {out} holds files that are not an mmgan report; choose a new or empty directory")
    listed = (out / MARKER).read_text(encoding="utf-8", errors="replace").splitlines()[1:]
    if not listed:  # a report written before the marker listed its files: all of it was the report's
        return
    ours = {MARKER, *listed}
    theirs = sorted(str(f.relative_to(out)) for f in out.rglob("*")
                    if f.is_file() and str(f.relative_to(out)) not in ours)
    if theirs:
        shown = ", ".join(theirs[:3]) + (f" (+{len(theirs) - 3} more)" if len(theirs) > 3 else "")
        raise ReportError(f"-o {out} holds files the report did not write ({shown}); move them out, or choose "
                          "another directory: the report replaces its folder whole")


def replace_directory(new: Path, target: Path) -> None:
    """Put ``new`` at ``target``: into an empty directory its files are moved (the directory stays, as the
    shell's current one may be it); an existing report is moved aside first, then removed."""
    if target.is_dir() and not any(target.iterdir()):
        for child in new.iterdir():
            os.replace(child, target / child.name)
        return
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
