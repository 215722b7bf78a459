"""What data-parallel training needs beyond Accelerate: batch statistics over the global batch, the
timeouts of the process group's collectives, and its teardown.

With BatchNorm (DCGAN has it in G and D), N processes of batch B normalise with N different batch
statistics, so they do not train like one process of batch N*B. :class:`SyncBatchNorm` all-reduces the
sums once per layer and normalises with the global batch's mean and variance; the gradients flow back
through the all-reduce. Unlike ``torch.nn.SyncBatchNorm`` (CUDA only), it runs on any backend, gloo
included, so CPU multi-process runs are equivalent to one big batch too.

Work rank 0 does alone (samples, evaluation, checkpoint writes, export) runs in :func:`rank0_work`: the
others wait for it in a barrier with the long start-up timeout, not in the next training collective
(whose short timeout :class:`mmgan.engine.rankwatch.RankWatch` sets).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmgan.errors import first_line

log = logging.getLogger("mmgan")


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class SyncBatchNorm(_BatchNorm):
    """BatchNorm over the whole batch of every process (in training, when a process group exists).

    Same parameters, buffers and state-dict keys as ``nn.BatchNorm{1,2,3}d``; in eval mode, or in a single
    process, it is exactly BatchNorm. Every process must call it the same number of times per step.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"SyncBatchNorm expects (B, C, ...) input, got {input.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _distributed()):
            return super().forward(x)
        self._check_input_dim(x)
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        xf = x.float()
        count = torch.full((1,), x.numel() // channels, dtype=torch.float32, device=x.device)
        stats = dist_fn.all_reduce(torch.cat([xf.sum(dims), (xf * xf).sum(dims), count]))
        n = stats[-1]
        mean = stats[:channels] / n
        var = (stats[channels:2 * channels] / n - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                unbiased = var * n / (n - 1).clamp_min(1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        shape = [1, channels] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm layer replaced by a :class:`SyncBatchNorm` holding the same tensors."""
    if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
        sync = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                             module.track_running_stats)
        if module.affine:
            sync.weight, sync.bias = module.weight, module.bias
        if module.track_running_stats:
            sync.running_mean, sync.running_var = module.running_mean, module.running_var
            sync.num_batches_tracked = module.num_batches_tracked
        sync.train(module.training)
        return sync
    for name, child in module.named_children():
        converted = convert_sync_batchnorm(child)
        if converted is not child:
            setattr(module, name, converted)
    return module


# ---- the collectives' timeouts ----------------------------------------------------------------------

#: start-up (rendezvous, DDP's first broadcast, loading a checkpoint) and waiting for rank 0's own work
LONG_WAIT = timedelta(hours=1)
_training_timeout: timedelta | None = None  # the training collectives' timeout while a RankWatch runs


def set_training_timeout(timeout: timedelta | None) -> None:
    """The training collectives' timeout from now on (None: the long one, outside the training loop)."""
    global _training_timeout
    _training_timeout = timeout
    _set_timeout(timeout or LONG_WAIT)


def _set_timeout(timeout: timedelta) -> None:
    if _distributed():
        # gloo and NCCL both take a new default for the operations issued after this call
        dist.distributed_c10d._set_pg_timeout(timeout)


TEARDOWN_WAIT = 60.0  # seconds the process group's teardown may take once every rank has finished
teardown_stuck = False  # set when it did not end in time: the CLI then exits without waiting for it


def end_training(accelerator: Any, wait: float | None = None) -> bool:
    """Accelerate's ``end_training`` (finish the trackers, end the process group), called after the last
    barrier, when every rank's work is written. Ending a gloo process group can hang now and then
    (pytorch#75097); it runs in a thread here, and after ``wait`` seconds (:data:`TEARDOWN_WAIT`) the run
    goes on without it (a warning, :data:`teardown_stuck` set). True when it ended in time."""
    global teardown_stuck
    for tracker in accelerator.trackers:
        tracker.finish()
    if not (dist.is_available() and dist.is_initialized()):
        return True
    failed: list[BaseException] = []

    def destroy() -> None:
        try:
            accelerator.state.destroy_process_group()
        except BaseException as exc:  # noqa: BLE001 - reported below; the run is already complete
            failed.append(exc)

    thread = threading.Thread(target=destroy, name="mmgan-teardown", daemon=True)
    thread.start()
    wait = TEARDOWN_WAIT if wait is None else wait
    thread.join(wait)
    if thread.is_alive():
        teardown_stuck = True
        log.warning("the process group did not shut down within %.0f s of the end of training (a known torch "
                    "hang); everything is written, exiting without it", wait)
        return False
    if failed:
        log.warning("ending the process group failed (%s); everything is written", first_line(failed[0]))
    return True


@contextlib.contextmanager
def rank0_work() -> Iterator[None]:
    """Around work that rank 0 does alone while the others wait (samples, evaluation, checkpoint
    writes, the export): the collectives inside, and the barrier that ends it on every rank, may take
    up to :data:`LONG_WAIT`; after it training collectives are short again. Every rank must enter it."""
    if not _distributed():
        yield
        return
    _set_timeout(LONG_WAIT)
    try:
        yield
        dist.barrier()
    finally:
        _set_timeout(_training_timeout or LONG_WAIT)


