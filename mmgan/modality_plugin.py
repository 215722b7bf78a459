"""Kept so that ``from mmgan.modality_plugin import ModalityPlugin`` keeps working: it lives in
:mod:`mmgan.contract.plugin` (public names: :mod:`mmgan.api`)."""

from __future__ import annotations

from mmgan.contract.plugin import ModalityPlugin, hookimpl

__all__ = ["ModalityPlugin", "hookimpl"]
