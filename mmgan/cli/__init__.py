"""The ``mmgan`` command line: the commands (``commands``), ``check-plugin`` (``check_plugin``) and
``new-plugin``'s templates (``scaffold``)."""

from __future__ import annotations

from mmgan.cli import export as _export  # noqa: F401 - registers `mmgan export`
from mmgan.cli.commands import build_cli, cli, main

__all__ = ["build_cli", "cli", "main"]
