"""Scoring generators: the evaluation context and runner (``scoring``), modality-free distances between
feature sets (``distances``) and loading exported generators (``inference``)."""

from __future__ import annotations

from mmgan.evaluation.inference import load_generator, pick_modality, sample
from mmgan.evaluation.scoring import (
    EvalContext,
    ModalityGenerator,
    context_for_run,
    evaluate,
    evaluate_run,
    format_table,
    write_report,
)

__all__ = ["EvalContext", "ModalityGenerator", "context_for_run", "evaluate", "evaluate_run", "format_table",
           "load_generator", "pick_modality", "sample", "write_report"]
