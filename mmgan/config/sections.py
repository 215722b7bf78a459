"""The sections of a run's config: ``[run]``, ``[train]``, and :class:`RunConfig`, which holds them with
``[trunk]``, one section per modality and the plugins' own sections."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mmgan.config.trunk import TrunkConfig
from mmgan.contract.modality import ModalityConfig
from mmgan.errors import ConfigError


@dataclass
class RunSection:
    """Which modalities, where outputs go, and the seed everything random derives from."""

    # the modalities this run trains (`--plugin`, repeatable)
    modalities: list[str] = field(default_factory=list)
    # the run directory (`--out`); empty: runs/<modalities>-<start time>
    out: str = ""
    # the seed of everything random: weights, data order, noise (`--seed`)
    seed: int = 0
    # another run whose exported trunk initialises this run's (transfer between modalities)
    init_trunk: str = ""
    # which of that run's exports: "best" (kept by select_by; the last where there is none) or "last"
    init_trunk_export: str = "best"
    # keep the trunk's blocks as they are (trained elsewhere: init_trunk); each modality's FiLM and gates
    # still train, a few parameters that adapt the frozen trunk to it
    freeze_trunk: bool = False
    # with freeze_trunk: how many of the trunk's first blocks stay as they are; -1 = the blocks init_trunk
    # gives (the others train), recorded here when the run starts (a run from before this key: all)
    frozen_blocks: int = -1


@dataclass
class TrainConfig:
    """The training loop. Adam and EMA defaults follow DCGAN (Radford et al. 2015)."""

    # training steps, each one D update and one G update (`--steps`)
    steps: int = 2000
    # samples per process and step (`--batch-size`); <modality>.batch_size overrides it per modality
    batch_size: int = 64
    # the adversarial loss: nonsaturating, hinge, lsgan or a plugin's; <modality>.loss overrides it
    loss: str = "nonsaturating"
    # Adam learning rate of the generators (stems, trunk, heads)
    lr_g: float = 2e-4
    # Adam learning rate of the discriminators
    lr_d: float = 2e-4
    # Adam beta1 of both optimizers (DCGAN: 0.5)
    beta1: float = 0.5
    # Adam beta2 of both optimizers
    beta2: float = 0.999
    # the EMA generator's decay per step, once the ramp-up allows it
    ema_decay: float = 0.999
    # the EMA half-life is at most this share of the steps so far (0: always ema_decay)
    ema_rampup: float = 0.05
    # before the EMA generator samples, is evaluated or exported, its BatchNorm statistics are recomputed
    # for its own weights on this many batches of generator inputs (0: keep the live generator's); 0 to 1000
    ema_bn_batches: int = 16
    # steps between lines of metrics.jsonl (losses averaged over processes, steps/s)
    log_every: int = 10
    # steps between sample files of the EMA generator (samples/<modality>/step_N)
    sample_every: int = 500
    # samples in each sample file, from the same inputs every time; 1 to 1024
    num_samples: int = 64
    # steps between resumable checkpoints; each also refreshes export/
    checkpoint_every: int = 500
    # how many of the newest checkpoints are kept
    keep_checkpoints: int = 3
    # DataLoader worker processes per modality (0: load in the training process); 0 to 256
    num_workers: int = 0
    # WebDataset shards: samples in each worker's shuffle buffer (memory: this many undecoded samples); 1 to
    # 1000000
    shuffle_buffer: int = 512
    # with several processes, BatchNorm statistics over the global batch (N x B trains like one N*B batch)
    sync_batchnorm: bool = True
    # channels_last memory format for G and D (faster convolutions on CPU)
    channels_last: bool = False
    # auto: bf16 where the device computes it natively and every modality was measured safe in it, else
    # fp32 (accelerate launch --mixed_precision wins); "no", "bf16", "fp16"; "" is Accelerate's setting
    mixed_precision: str = "auto"
    # every eval_every steps (0: never) the plugins' metrics of the EMA generator on eval_samples samples
    eval_every: int = 0
    # samples per periodic evaluation, at most each modality's own (<modality>.eval_samples sets it)
    eval_samples: int = 1000
    # what the collapse watchdog does when D's loss is pinned, G's explodes or the samples' diversity falls far
    # below the real data's (docs/trust.md#the-collapse-watchdog): "off" (not watched), "warn" (a warning,
    # a flag in run.json, a mark on the report's curves), "stop", or "rollback" (to the last checkpoint before
    # the onset, with both learning rates halved)
    on_collapse: str = "warn"
    # steps a collapse signal must hold before it counts (0: 4% of train.steps, at least 100)
    collapse_window: int = 0
    # steps between the watchdog's diversity checks and verdicts (0: a quarter of the window)
    collapse_every: int = 0
    # the samples' spread over the real data's under which diversity has collapsed; 0 to 1
    collapse_diversity: float = 0.2
    # experiment trackers through Accelerate, e.g. ["tensorboard"] (files in RUN/trackers/; on the command
    # line --set train.log_with=tensorboard,wandb):
    # losses, metrics, sample images and audio; each needs its package (pip install 'mmgan[tensorboard]')
    log_with: list[str] = field(default_factory=list)


@dataclass
class RunConfig:
    """Everything that defines a run; ``config.toml`` in the run directory is this, serialised."""

    run: RunSection = field(default_factory=RunSection)
    train: TrainConfig = field(default_factory=TrainConfig)
    trunk: TrunkConfig = field(default_factory=TrunkConfig)
    modalities: dict[str, ModalityConfig] = field(default_factory=dict)
    # sections of plugins that add no modality (a loss term's weight, say): mmgan_register_config
    plugins: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> Any:
        """The dataclass behind ``[name]`` in TOML: run, train, trunk, a modality's or a plugin's config."""
        if name in ("run", "train", "trunk"):
            return getattr(self, name)
        if name in self.modalities:
            return self.modalities[name]
        if name in self.plugins:
            return self.plugins[name]
        raise ConfigError(f"unknown config section {name!r}; valid sections: {', '.join(self.section_names())}")

    def section_names(self) -> list[str]:
        return ["run", "train", "trunk", *self.modalities, *self.plugins]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(self.section(name)) for name in self.section_names()}
