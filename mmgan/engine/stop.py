"""Stopping a run cleanly on SIGTERM or Ctrl-C: checkpoint at a step boundary, then exit.

The first SIGTERM or SIGINT asks the loop to stop; every rank stops after the same step (the ranks
agree at each step boundary), writes a checkpoint and the export, and the run ends with ``Stopped``
(the CLI prints how to continue and exits 143 or 130, the shell's codes for those signals). A second
SIGINT (Ctrl-C again, while the checkpoint is written, say) raises ``KeyboardInterrupt`` at once:
nothing more is written, and the previous checkpoint stays intact (a checkpoint becomes visible only
once complete).

Schedulers follow SIGTERM with SIGKILL after a grace period (30 s in Slurm and Kubernetes by default). A
stop that has not ended ``MMGAN_STOP_GRACE`` seconds (25 by default; 0 waits for as long as it takes) after
the first signal is abandoned: ``GraceExpired`` is raised in the main thread as soon as it runs Python again
(between two native operations of a very large step, say), and if it is still inside one native call 3 s
later, the process leaves at once with one line. Either way the last complete checkpoint stays valid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

import torch
from accelerate import Accelerator

from mmgan.files import env_seconds

EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}
GRACE_ENV = "MMGAN_STOP_GRACE"
RANKS = 1 << 20  # a signal and the rank that got it travel as one number: signum * RANKS + rank
HARD_EXIT_AFTER = 3.0  # seconds the main thread has to unwind once the grace period is over


def stop_grace() -> float:
    """Seconds a signalled stop may take before it is abandoned (``MMGAN_STOP_GRACE``, 25; 0: no limit)."""
    return env_seconds(GRACE_ENV, 25.0, zero_means="no limit")


def exit_code(signum: int) -> int:
    return EXIT_CODES.get(signal.Signals(signum), 128 + signum)


class GraceExpired(KeyboardInterrupt):
    """The stop a signal asked for did not end within the grace period: what was in progress (a step, a
    checkpoint) is abandoned, and the last complete checkpoint stays."""

    def __init__(self, signum: int, grace: float) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}: the step or checkpoint in progress did not "
                         f"end within {grace:g} s of the signal ({GRACE_ENV}), so it was abandoned")
        self.signum, self.grace = signum, grace

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)


class Stopped(Exception):
    """A run stopped by a signal (to another rank, where ``rank`` is given) after writing a checkpoint of
    ``step``."""

    def __init__(self, signum: int, step: int, rank: int | None = None) -> None:
        to = f" (sent to rank {rank})" if rank is not None else ""
        super().__init__(f"stopped by {signal.Signals(signum).name}{to} at step {step}")
        self.signum, self.step, self.rank = signum, step, rank

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)


class StopRequests:
    """The signals this process received while installed (see :func:`stop_requests`), and the clock of the
    grace period the first one starts."""

    def __init__(self, grace: float = 0.0) -> None:
        self.signum: int | None = None
        self.grace, self.expired = grace, False
        self.done = threading.Event()  # set when the body of stop_requests is left: the clock stops
        self.where = ""  # what the hard exit's line says (set by the trainer: the run and its last checkpoint)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.expired:
            raise GraceExpired(self.signum or signum, self.grace)
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now, write nothing more
        if self.signum is None:
            self.signum = signum
            if self.grace > 0:
                threading.Thread(target=self._clock, name="mmgan-stop-grace", daemon=True).start()

    def _clock(self) -> None:
        if self.done.wait(self.grace):
            return
        self.expired = True
        main = threading.main_thread().ident
        if main is not None:  # the handler runs in the main thread as soon as it runs Python again
            signal.pthread_kill(main, self.signum or signal.SIGTERM)
        if self.done.wait(HARD_EXIT_AFTER):
            return
        # still inside one native call: leave now (the last complete checkpoint is valid; the OS frees the lock)
        message = GraceExpired(self.signum or signal.SIGTERM, self.grace)
        sys.stderr.write(f"\n{message}, in native code that did not return; {self.where}\n")
        sys.stderr.flush()
        os._exit(message.exit_code)

    def agreed_by(self, accelerator: Accelerator) -> tuple[int | None, int | None]:
        """The signal any rank received, and which rank (None: this one, or no signal)."""
        if accelerator.num_processes == 1:
            return self.signum, None
        # one all-reduce: the larger signal wins (SIGTERM over SIGINT), then the higher rank
        mine = float(self.signum * RANKS + accelerator.process_index) if self.signum else 0.0
        flag = accelerator.reduce(torch.tensor([mine], dtype=torch.float64, device=accelerator.device),
                                  reduction="max")
        if not int(flag.item()):
            return None, None
        signum, rank = divmod(int(flag.item()), RANKS)
        return signum, (None if rank == accelerator.process_index else rank)


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequests]:
    """Catch SIGTERM and SIGINT while the body runs (the main thread only: Python delivers signals
    there), restoring the previous handlers afterwards."""
    requests = StopRequests(stop_grace())
    if threading.current_thread() is not threading.main_thread():
        yield requests
        return
    previous = {s: signal.signal(s, requests.handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield requests
    finally:
        requests.done.set()
        for s, handler in previous.items():
            signal.signal(s, handler)
