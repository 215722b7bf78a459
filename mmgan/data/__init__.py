"""Real data for training and evaluation: sources opened through their modality (``loading``) and
WebDataset shards (``shards``: the manifest, splitting by rank and worker, resampling, skipping bad members)."""

from __future__ import annotations

from mmgan.data.loading import EpochSampler, check_int, endless_batches, open_source, open_training_data
from mmgan.data.shards import ShardStream, open_shards, pack

__all__ = ["EpochSampler", "ShardStream", "check_int", "endless_batches", "open_shards", "open_source",
           "open_training_data", "pack"]
