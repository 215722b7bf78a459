"""mmgan: a plugin-based multimodal GAN framework."""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

# the markers of mmgan's hooks: ``@mmgan.hookimpl`` on a plugin's function, ``hookspec`` on the contract's
hookspec = pluggy.HookspecMarker("mmgan")
hookimpl = pluggy.HookimplMarker("mmgan")

__all__ = ["__version__", "hookimpl", "hookspec"]
