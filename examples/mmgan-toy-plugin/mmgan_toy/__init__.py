"""An example third-party mmgan plugin: a new modality, a discriminator wrapper and a loss term.

Each extension lives in its own module and has its own entry point (``ring2d``, ``spectral``, ``r1``),
so any one of them can be loaded alone.
"""

from __future__ import annotations

__version__ = "0.1.0"
