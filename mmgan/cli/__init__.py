"""The ``mmgan`` command line: the commands (``commands``; ``data pack`` in ``pack``, ``export`` in ``export``),
``check-plugin`` (``check_plugin``) and
``new-plugin``'s templates (``scaffold``)."""

from __future__ import annotations

from mmgan.cli import explore as _explore  # noqa: F401 - registers `mmgan explore`
from mmgan.cli import export as _export  # noqa: F401 - registers `mmgan export`
from mmgan.cli import pack as _pack  # noqa: F401 - registers `mmgan data pack`
from mmgan.cli.commands import build_cli, cli, main

__all__ = ["build_cli", "cli", "main"]
