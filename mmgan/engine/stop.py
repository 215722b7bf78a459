"""Stopping a run cleanly on SIGTERM or Ctrl-C: checkpoint at a step boundary, then exit.

The first SIGTERM or SIGINT asks the loop to stop; every rank stops after the same step (the ranks
agree at each step boundary), writes a checkpoint and the export, and the run ends with ``Stopped``
(the CLI prints how to continue and exits 143 or 130, the shell's codes for those signals). A second
SIGINT (Ctrl-C again, while the checkpoint is written, say) raises ``KeyboardInterrupt`` at once:
nothing more is written, and the previous checkpoint stays intact (a checkpoint becomes visible only
once complete).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import torch
from accelerate import Accelerator

EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}


class Stopped(Exception):
    """A run stopped by a signal after writing a checkpoint of ``step``."""

    def __init__(self, signum: int, step: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}")
        self.signum, self.step = signum, step

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(signal.Signals(self.signum), 128 + self.signum)


class StopRequests:
    """The signals this process received while installed (see :func:`stop_requests`)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now, write nothing more
        if self.signum is None:
            self.signum = signum

    def agreed(self, accelerator: Accelerator) -> int | None:
        """The signal any rank received (every rank calls this after every step), or None."""
        mine = float(self.signum or 0)
        if accelerator.num_processes > 1:
            flags = accelerator.reduce(torch.tensor([mine], device=accelerator.device), reduction="max")
            mine = flags.item()
        return int(mine) or None


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequests]:
    """Catch SIGTERM and SIGINT while the body runs (the main thread only: Python delivers signals
    there), restoring the previous handlers afterwards."""
    requests = StopRequests()
    if threading.current_thread() is not threading.main_thread():
        yield requests
        return
    previous = {s: signal.signal(s, requests.handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield requests
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
