"""The training engine: every modality of a run, one Accelerate-driven loop.

A reader can take it one part at a time:

- ``build``:   a run's networks (stems and heads around one shared trunk), its accelerator, its data;
- ``step``:    one training step, top to bottom: update D, update G (``objective``: the loss of each half;
  ``parts``: what a step works with);
- ``conflict``: how the modalities' gradients combine on the trunk blocks they share;
- ``ema``:     the EMA generator (decay schedule, update);
- ``rundir``:  the files of a run directory (config.toml, metrics.jsonl);
- ``resume``:  checkpoints written and read back so that resume is exact;
- ``trainer``: ``Trainer``, which puts these together; ``Trainer.fit`` is the loop.

    mmgan run --plugin image                                           # one CPU or GPU
    accelerate launch --multi_gpu -m mmgan run --plugin image          # many GPUs
"""

from mmgan.engine.build import build_discriminators, build_generators, load_trunk
from mmgan.engine.collapse import build_watch, watch_settings
from mmgan.engine.ema import batchnorm_layers, ema_decay, recalibrate_batchnorm
from mmgan.engine.trainer import Trainer

__all__ = ["Trainer", "batchnorm_layers", "build_discriminators", "build_generators", "build_watch", "ema_decay",
           "load_trunk", "recalibrate_batchnorm", "watch_settings"]
