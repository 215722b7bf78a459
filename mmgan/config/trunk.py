"""The shared trunk's settings ([trunk]): its size and how modalities share it (the network is mmgan.trunk)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrunkConfig:
    """Size of the shared trunk. ``width`` is the token width every stem must emit."""

    # token width: what every stem emits and every head takes (256: DCGAN-32's first layer); 1 to 8192
    width: int = 256
    # residual blocks in the trunk (a modality may go through fewer: <modality>.trunk_depth); 0 to 1024
    depth: int = 2
    # the depthwise convolution's kernel over T: odd, 1 to 1023
    kernel_size: int = 3
    # the MLP's hidden width as a multiple of width; 1 to 64
    expansion: int = 2
    # the trunk's learning rate as a multiple of train.lr_g (1: one Adam group with the stems and heads)
    lr_scale: float = 1.0
    # "plain": x + branch(x), the branch's last layer zero-initialised; "bounded": x + g * branch(x)
    # rescaled to x's size per token, with a gate g per modality and block starting at 0 (a block can
    # never outweigh its input more than |g| times)
    residual: str = "bounded"
    # in a run of several modalities, a block that one modality alone goes through (the others stop
    # earlier: <modality>.trunk_depth): "owner" trains and averages it as that modality's own (its lr_g,
    # betas, schedule and EMA decay, as in a run of it alone); "shared": at [train]'s, like shared blocks
    exclusive_blocks: str = "owner"
    # how the modalities' gradients on the blocks they share are combined: "sum" (one backward of the
    # summed losses), "pcgrad" (each loses its component against any other it conflicts with) or
    # "normalized" (each rescaled to their mean norm); mmgan.engine.conflict, docs/multitask.md
    gradients: str = "sum"

    # the keys that shape the weights (what must agree for --init-trunk); lr_scale only trains them
    SHAPE_KEYS = ("width", "depth", "kernel_size", "expansion", "residual")
    # the documented range of each size: generous, so that it only stops values no network could be
    # built from (a width of 10 million); whether a size fits the machine is mmgan.config.sizes' question
    RANGES = {"width": (1, 8192), "depth": (0, 1024), "kernel_size": (1, 1023), "expansion": (1, 64)}

    def validate(self) -> None:
        """A one-line ValueError naming the key, its value and its range, for any size outside its range."""
        for name, (low, high) in self.RANGES.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"trunk.{name} must be between {low} and {high}, got {value}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"trunk.kernel_size must be odd (to keep T), got {self.kernel_size}")
        if self.residual not in ("plain", "bounded"):
            raise ValueError(f"trunk.residual must be plain or bounded, got {self.residual!r}")
        if self.gradients not in ("sum", "pcgrad", "normalized"):
            raise ValueError(f"trunk.gradients must be sum, pcgrad or normalized, got {self.gradients!r}")
        if self.exclusive_blocks not in ("owner", "shared"):
            raise ValueError(f"trunk.exclusive_blocks must be owner or shared, got {self.exclusive_blocks!r}")
