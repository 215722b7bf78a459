"""mmgan: a plugin-based multimodal GAN framework."""

from __future__ import annotations

from mmgan.contract.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl", "hookspec"]
