"""What a plugin hands the report: kept at this path (``from mmgan.report.section import ReportSection``);
the classes live in the contract, :mod:`mmgan.contract.contexts` (public names: :mod:`mmgan.api`)."""

from __future__ import annotations

from mmgan.contract.contexts import (
    LAYOUTS,
    STEP_FILE,
    ReportContext,
    ReportGroup,
    ReportItem,
    ReportSection,
    nearest_step,
)

__all__ = ["LAYOUTS", "STEP_FILE", "ReportContext", "ReportGroup", "ReportItem", "ReportSection", "nearest_step"]
