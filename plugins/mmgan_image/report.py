"""The image modality's part of ``mmgan report``: the run's sample grids, the best and the last step's
first, then every sample step on a slider. One grid per step, linked as the run wrote it."""

from __future__ import annotations

from mmgan.report.section import ReportContext, ReportSection


def image_report_section(ctx: ReportContext) -> ReportSection | None:
    grids = ctx.sample_files(".png")
    if not grids:
        return None
    best = ctx.best
    text = (f"{len(grids)} sample grids of the EMA generator, the same noise at every step."
            + (f" Best step by {best['metric']}: {best['step']} ({best['metric']} = {best['value']:.4g})."
               if best and isinstance(best.get("value"), (int, float)) else ""))
    return ReportSection.picture_per_step("image: sample grids", grids, ctx.best_step, text=text)
