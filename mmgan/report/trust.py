"""The report's section on what a run makes, beside the plugin's samples: the data-copying verdict of
``mmgan eval`` with the generated samples nearest their training neighbours (``RUN/memorisation``), the
interpolation paths of ``mmgan explore`` (``RUN/explore/<modality>``), and the collapses the watchdog found
(``run.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmgan.report.section import ReportGroup, ReportItem, ReportSection

MEDIA = {".png": "image", ".jpg": "image", ".jpeg": "image", ".webp": "image", ".wav": "audio"}


def _items(files: list[Path], caption: str) -> list[ReportItem]:
    """One item per file stem: its picture and its sound together (a clip and its spectrogram)."""
    stems: dict[str, dict[str, Path]] = {}
    for f in sorted(files):
        kind = MEDIA.get(f.suffix.lower())
        if kind and f.is_file() and not f.name.startswith("."):
            stems.setdefault(f.stem, {})[kind] = f
    return [ReportItem(f"{caption} ({stem})" if len(stems) > 1 else caption, media.get("image"), media.get("audio"))
            for stem, media in stems.items()]


def _verdict(run_dir: Path, modality: str) -> dict[str, Any] | None:
    try:
        report = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or report.get("modality") != modality:
        return None
    verdict = report.get("metrics", {}).get("memorisation")
    return verdict if isinstance(verdict, dict) else None


def trust_section(run_dir: Path, modality: str, facts: dict[str, Any]) -> ReportSection | None:
    """The section, or None when the run has none of it."""
    groups, text = [], []
    found = [c for c in facts.get("collapse", []) if isinstance(c, dict) and c.get("modality") == modality]
    for c in found:
        text.append(f"Collapse found at step {c.get('step')} ({c.get('signal')}, since step {c.get('onset')}; "
                    f"train.on_collapse = {c.get('action')}).")
    for r in facts.get("rollbacks", []) if found else []:
        text.append(f"Rolled back from step {r.get('at_step')} to {r.get('to_step')}; learning rates "
                    f"x{r.get('lr_scale')}.")
    verdict = _verdict(run_dir, modality)
    if verdict is not None:
        text.append(f"Memorisation check (mmgan eval): {'COPYING' if verdict.get('copying') else 'not copying'}, "
                    f"Z = {verdict.get('statistic')} (copying under {verdict.get('threshold')}); median distance to "
                    f"the nearest training sample {verdict.get('generated_median')} generated vs "
                    f"{verdict.get('held_out_median')} held-out; held-out data: {verdict.get('held_out')}.")
    pairs = _items(list((run_dir / "memorisation").glob(f"{modality}*")), "generated, nearest training sample, ...")
    if pairs:
        groups.append(ReportGroup("the generated samples nearest the training data, each beside its neighbour",
                                  pairs, columns=2))
    paths = _items(list((run_dir / "explore" / modality).glob("interpolation*")), "interpolation")
    if paths:
        groups.append(ReportGroup("latent exploration (mmgan explore), one path per row", paths, columns=2))
    if not groups and not text:
        return None
    return ReportSection(f"{modality}: collapse, memorisation and latent exploration", groups=groups,
                         layout="stack", text=" ".join(text))
