"""The training engine: every modality of a run, one Accelerate-driven loop.

A reader can take it one part at a time:

- ``build``:   a run's networks (stems and heads around one shared trunk), its accelerator, its data;
- ``step``:    one training step: a D update, then a G update, both through one loss loop;
- ``conflict``: how the modalities' gradients combine on the trunk blocks they share;
- ``ema``:     the EMA generator (decay schedule, update);
- ``rundir``:  the files of a run directory (config.toml, metrics.jsonl);
- ``resume``:  checkpoints written and read back so that resume is exact;
- ``trainer``: ``Trainer``, which puts these together; ``Trainer.fit`` is the loop.

    mmgan run --plugin image                                           # one CPU or GPU
    accelerate launch --multi_gpu -m mmgan run --plugin image          # many GPUs
"""

from mmgan.engine.build import build_discriminators, build_generators, load_trunk
from mmgan.engine.ema import ema_decay
from mmgan.engine.trainer import Trainer

__all__ = ["Trainer", "build_discriminators", "build_generators", "ema_decay", "load_trunk"]
