"""Kept so that ``from mmgan.modality import Modality, ModalityConfig`` keeps working: they live in
:mod:`mmgan.contract.modality` (public names: :mod:`mmgan.api`)."""

from __future__ import annotations

from mmgan.contract.modality import Modality, ModalityConfig

__all__ = ["Modality", "ModalityConfig"]
