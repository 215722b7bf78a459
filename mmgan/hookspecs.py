"""Kept so that ``from mmgan.hookspecs import hookimpl`` keeps working: the hook specs live in
:mod:`mmgan.contract.hookspecs` (public names: :mod:`mmgan.api`)."""

from __future__ import annotations

from mmgan.contract.hookspecs import *  # noqa: F403
from mmgan.contract.hookspecs import hookimpl, hookspec

__all__ = ["hookimpl", "hookspec"]
