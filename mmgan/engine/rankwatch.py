"""Ranks that notice when another rank is gone.

A rank that dies or freezes must not leave the others waiting in a collective for the process group's
timeout. :class:`RankWatch` (around the training loop) gives the training collectives a short timeout
(``MMGAN_RANK_TIMEOUT``, 90 s), has every rank beat a counter in the launcher's rendezvous store, and
turns a failed collective into :class:`RankLost`, one line naming the rank whose beat stopped. A rank
whose peers stopped beating ends itself even where it cannot raise (stuck in an NCCL collective).

A rank whose launcher is gone (``accelerate launch``/torchrun killed, its process group included: the
launcher starts its workers in sessions of their own, so they outlive it) asks its own run to stop, as
SIGTERM does: every rank stops after the same step with a checkpoint, instead of training on without
the launcher that would restart or end it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch.distributed as dist

from mmgan.engine.distributed import _distributed, set_training_timeout
from mmgan.errors import MMGANError, first_line
from mmgan.files import env_seconds

log = logging.getLogger("mmgan")

RANK_TIMEOUT_ENV = "MMGAN_RANK_TIMEOUT"
BEAT_EVERY = 2.0  # seconds between heartbeats
_watches = itertools.count()  # every rank opens its watches in the same order: one key space each


class RankLost(MMGANError):
    """Another process of a distributed run died, froze or lost contact: the run stops on every rank."""


def rank_timeout() -> timedelta:
    """How long training waits for a silent rank: a training collective, or a rank's heartbeat
    (``MMGAN_RANK_TIMEOUT`` seconds, 90 by default)."""
    return timedelta(seconds=env_seconds(RANK_TIMEOUT_ENV, 90.0))


def _store() -> Any | None:
    """A client of the launcher's rendezvous store (torchrun's, at MASTER_ADDR:MASTER_PORT), or None."""
    host, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not (host and port):
        return None
    try:
        return dist.TCPStore(host, int(port), is_master=False, timeout=timedelta(seconds=10),
                             wait_for_workers=False)
    except (RuntimeError, ValueError):
        return None


class Heartbeats:
    """A counter per rank in the rendezvous store, advanced every :data:`BEAT_EVERY` seconds by a
    thread of that rank. The thread beats while the main thread waits in a collective, evaluates or
    writes, so a counter that stops means a process that died or froze (or a machine that went away).
    Rank 0 watches every rank; the others watch rank 0 and the abort notice. A rank that leaves the
    loop without a collective failing marks its counter finished, and is watched no more."""

    FINISHED = "finished"

    def __init__(self, store: Any, rank: int, world: int, silent_after: float,
                 on_silent: Callable[[list[int]], None], on_abort: Callable[[str], None],
                 on_orphaned: Callable[[int], None] | None = None) -> None:
        self.store, self.rank, self.world = store, rank, world
        # the launcher that started this rank (torchrun, accelerate launch): its parent process
        self.launcher = os.getppid() if os.environ.get("TORCHELASTIC_RUN_ID") else None
        self.on_orphaned = on_orphaned
        space = f"mmgan/{next(_watches)}"
        self.beat_key, self.who_key, self.abort_key = f"{space}/beat/{{}}", f"{space}/who/{{}}", f"{space}/abort"
        self.silent_after, self.on_silent, self.on_abort = silent_after, on_silent, on_abort
        self.peers = [r for r in range(world) if r != rank]
        self.watched = self.peers if rank == 0 else [0]
        self.lock = threading.Lock()  # one store client, used by the thread and the main thread
        now = time.monotonic()
        self.seen: dict[int, tuple[str, float]] = {r: ("", now) for r in self.peers}  # value, when it changed
        self.store_ok = now
        self.done = threading.Event()
        self.deciding = False  # set while the main thread decides: the thread beats on, with no verdicts
        self.thread = threading.Thread(target=self._run, name="mmgan-heartbeat", daemon=True)

    def start(self) -> None:
        with self.lock:
            self.store.set(self.beat_key.format(self.rank), "0")
            self.store.set(self.who_key.format(self.rank), f"{socket.gethostname()} pid {os.getpid()}")
        self.thread.start()

    def stop(self, finished: bool) -> None:
        self.done.set()
        self.thread.join(timeout=2 * BEAT_EVERY)
        if finished:
            with contextlib.suppress(Exception), self.lock:
                self.store.set(self.beat_key.format(self.rank), self.FINISHED)

    def read(self, ranks: list[int]) -> dict[int, str]:
        """Each rank's counter ("" before its first beat, FINISHED after its last)."""
        keys = [self.beat_key.format(r) for r in ranks]
        with self.lock:
            if self.store.check(keys):
                return {r: v.decode() for r, v in zip(ranks, self.store.multi_get(keys), strict=True)}
            return {r: self.store.get(k).decode() if self.store.check([k]) else "" for r, k in zip(ranks, keys,
                                                                                                  strict=True)}

    def who(self, rank: int) -> str:
        """Where ``rank`` runs ("host pid N"), or "" when the store cannot say."""
        try:
            with self.lock:
                return self.store.get(self.who_key.format(rank)).decode()
        except Exception:  # the store went with rank 0's machine: the rank number says enough
            return ""

    def abort(self, message: str) -> None:
        """Tell every rank to stop, with ``message`` (their threads read it within a beat)."""
        with contextlib.suppress(Exception), self.lock:
            self.store.set(self.abort_key, message)

    def silent(self, wait: float) -> list[int]:
        """The ranks whose counter does not move within ``wait`` seconds (finished ones included: they
        left); rank 0 if the store itself is gone (it lives with rank 0's launcher)."""
        try:
            first = self.read(self.peers)
            moved: set[int] = set()
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and len(moved) < len(self.peers):
                time.sleep(0.25)
                now = self.read(self.peers)
                moved |= {r for r in self.peers if now[r] != first[r] and now[r] != self.FINISHED}
        except Exception:
            return [0]
        return [r for r in self.peers if r not in moved]

    def _run(self) -> None:
        while not self.done.wait(BEAT_EVERY):
            now = time.monotonic()
            if self.launcher is not None and os.getppid() != self.launcher and not self.deciding:
                launcher, self.launcher = self.launcher, None  # once
                if self.on_orphaned is not None:
                    self.on_orphaned(launcher)
            try:
                with self.lock:
                    self.store.add(self.beat_key.format(self.rank), 1)
                    notice = self.store.get(self.abort_key).decode() if self.store.check([self.abort_key]) else None
                values = self.read(self.watched)
                self.store_ok = now
            except Exception:
                if now - self.store_ok > self.silent_after and not self.deciding:
                    self.on_silent([0])
                continue
            if notice and not self.deciding:
                self.on_abort(notice)
            for r, value in values.items():
                if value != self.seen[r][0]:
                    self.seen[r] = (value, now)
            silent = [r for r in self.watched
                      if self.seen[r][0] != self.FINISHED and now - self.seen[r][1] > self.silent_after]
            if silent and not self.deciding:
                self.on_silent(silent)


class RankWatch:
    """Around a distributed training loop: training collectives time out after :func:`rank_timeout`, and a
    rank that dies, freezes or loses contact ends the run on every rank with one line that names it and
    says how to continue (see the module doc). Does nothing in a single process."""

    def __init__(self, run_dir: Path, step: Callable[[], int]) -> None:
        self.run_dir, self.step = run_dir, step
        self.timeout = rank_timeout()
        self.beats: Heartbeats | None = None
        self.rank, self.world = 0, 1

    def __enter__(self) -> RankWatch:
        if not _distributed():
            return self
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        set_training_timeout(self.timeout)
        store = _store()
        if store is not None:
            # a beat can come late by a period or two on a busy machine: never judge on less than ten
            silent_after = max(self.timeout.total_seconds(), 10 * BEAT_EVERY)
            self.beats = Heartbeats(store, self.rank, self.world, silent_after, self._lost_in_thread,
                                    self._aborted_in_thread, self._orphaned_in_thread)
            self.beats.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if self.world == 1:
            return
        set_training_timeout(None)
        beats = self.beats
        if beats is not None:
            beats.deciding = True  # the thread beats on (the others may be asking), with no verdicts
        failed = isinstance(exc, RuntimeError) and (beats is not None or _from_collective(exc))
        try:
            if failed:
                lost = beats.silent(wait=2.5 * BEAT_EVERY) if beats is not None else []
                if lost or _from_collective(exc):
                    message = self.message(lost, exc)
                    if beats is not None and self.rank == 0 and lost:
                        beats.abort(message)
                    raise RankLost(message) from None
        finally:
            self.beats = None
            if beats is not None:
                beats.stop(finished=not failed)

    def message(self, lost: list[int], exc: BaseException | None = None) -> str:
        """One line: which rank, at which step, and the command that continues the run."""
        from mmgan import checkpoint

        if lost:
            beats = self.beats
            where = [beats.who(r) if beats is not None else "" for r in lost]
            named = ", ".join(f"{r} ({w})" if w else str(r) for r, w in zip(lost, where, strict=True))
            what = f"rank {named} of {self.world} stopped answering (died, froze or lost the network; see its log)"
        else:
            what = f"a collective of the {self.world} ranks failed ({_first_line(exc)})"
        saved = checkpoint.checkpoint_dirs(self.run_dir)
        resume = (f"continue from the checkpoint of step {int(saved[-1].name.removeprefix('step_'))}" if saved
                  else "start again (no checkpoint yet)")
        return f"{what} at step {self.step()}; every rank stops: {resume} with: mmgan run --resume {self.run_dir}"

    def _lost_in_thread(self, lost: list[int]) -> None:
        self._end(self.message(lost), notify=self.rank == 0)

    def _orphaned_in_thread(self, launcher: int) -> None:
        # as SIGTERM: every rank stops after the same step, with a checkpoint (the stop's grace period bounds it)
        sys.stderr.write(f"mmgan: rank {self.rank}: its launcher (pid {launcher}) is gone; stopping the run at the "
                         "next step, as SIGTERM does\n")
        sys.stderr.flush()
        main = threading.main_thread().ident
        if main is not None:
            signal.pthread_kill(main, signal.SIGTERM)

    def _aborted_in_thread(self, notice: str) -> None:
        self._end(notice, notify=False)

    def _end(self, message: str, notify: bool) -> None:
        # the main thread may be stuck in a collective that never returns (NCCL): end the process from here
        if notify and self.beats is not None:
            self.beats.abort(message)
        sys.stderr.write(f"Error: {message}\n")
        sys.stderr.flush()
        os._exit(1)


def _from_collective(exc: BaseException) -> bool:
    text = str(exc)
    return any(mark in text for mark in ("gloo", "NCCL", "c10d", "ProcessGroup"))


def _first_line(exc: BaseException | None) -> str:
    """torch's message without its source location and advice: "Connection closed by peer [10.0.0.2]:1234"."""
    text = first_line(exc)
    text = re.sub(r"^\[[^\]]*\.(cc|cpp|hpp|h):\d+\]\s*", "", text)
    return text.split(". This is typically")[0].strip()
