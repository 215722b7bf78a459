"""The modality object: subclass :class:`ModalityPlugin`, set ``modality``, write the methods you need.

Core calls these methods directly for the modality the object registers (no ``if modality != NAME``
guards)::

    class Ring(ModalityPlugin):
        modality = Modality(name="ring2d", config_class=RingConfig, make_input=noise, sample_input=...)

        def build_generator(self, config, width):
            return RingStem(config, width), RingHead(width)

        def build_discriminator(self, config):
            return RingDiscriminator(config)

    plugin = Ring()          # the entry point names this object: ring2d = "mmgan_toy.ring:plugin"

A method you leave out answers None (for ``build_generator``, ``build_discriminator`` and ``read_data`` that
is an error when core needs it). Hooks where several plugins contribute (``mmgan_register_commands``,
``mmgan_register_losses``, ...) are written on the subclass as ``@mmgan.hookimpl`` methods, as in a module.
The loss-term methods join ``mmgan_loss_terms`` at this plugin's place, so terms keep pluggy's order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from mmgan import hookimpl
from mmgan.contract.modality import Modality

if TYPE_CHECKING:  # torch only in annotations: a plugin's class is defined at import, every CLI start
    import torch
    from torch import nn

    from mmgan.contract.codec import ShardCodec
    from mmgan.contract.contexts import EvalContext, LossContext, ReportContext, ReportSection

__all__ = ["ModalityPlugin", "hookimpl"]


class ModalityPlugin:
    """Base class of a modality object; set ``modality`` and override what you need."""

    modality: ClassVar[Modality]
    #: ``{metric: "min" | "max"}`` for the metrics :meth:`evaluate` returns (which way is better)
    metric_goals: ClassVar[Mapping[str, str]] = {}
    #: the generator input's axes, besides the batch (axis 0), whose size an ONNX export leaves free:
    #: ``{2: "frames"}`` for a vocoder's mel (B, bands, frames) (contract version 8)
    onnx_axes: ClassVar[Mapping[int, str]] = {}
    #: the largest |ONNX Runtime - PyTorch| an ONNX export may differ by, relative to the output's largest
    #: magnitude (both in float32; a generator whose ops round differently under ONNX, such as a DFT by
    #: matrix for an FFT, declares what it measured) (contract version 9)
    onnx_tolerance: ClassVar[float] = 1e-4

    @property
    def name(self) -> str:
        """The modality's name (``self.modality.name``)."""
        return self.modality.name

    # ---- what a modality answers for itself ------------------------------------------------------------

    def build_generator(self, config: Any, width: int) -> tuple[nn.Module, nn.Module] | None:
        """Called once per run (and when an export loads): ``(stem, head)`` around the shared trunk.

        The stem maps the generator input to tokens ``(B, width, T)``; the head maps trunk tokens of the same
        shape to a sample. ``config`` is this modality's config dataclass. A head with ``takes_input = True``
        is called ``head(tokens, input)``: the input reaches it around the trunk (a vocoder's mel for a
        magnitude prior). A stem or head with ``at_training_step(step)`` has it called with the 0-based step
        before each training forward of the trained generator (never the EMA copy, evaluation or inference).
        """
        return None

    def build_discriminator(self, config: Any) -> nn.Module | None:
        """Called once per run: the discriminator. Its forward takes a batch of real or generated samples and
        returns logits: a tensor, a list of tensors (several scales), or an object with ``logits``."""
        return None

    def read_data(self, source: str, config: Any, seed: int) -> torch.utils.data.Dataset | None:
        """Called when a run, ``mmgan eval`` or ``mmgan data pack`` opens ``source`` (``builtin:<name>`` or a
        path; shards are core's): a dataset whose items are tensors of the shape the discriminator takes.
        None: the source is not yours. Unreadable: raise ``DataError`` with one line naming the source."""
        return None

    def shard_codec(self, config: Any) -> ShardCodec | None:
        """Called by ``mmgan data pack`` and when a run reads shards: how samples are packed into WebDataset
        shards and decoded back (:class:`mmgan.contract.codec.ShardCodec`); None: no shards."""
        return None

    def write_samples(self, samples: torch.Tensor, path: Path, config: Any,
                      real: torch.Tensor | None) -> list[Path] | None:
        """Called every ``train.sample_every`` steps and by ``mmgan generate``: write ``samples`` (float32 on
        the CPU) at ``path`` atomically (add the suffix when ``path`` has none), ``real`` beside them when
        given; return the written paths."""
        return None

    def features(self, samples: torch.Tensor, config: Any) -> torch.Tensor | None:
        """Called by the collapse watchdog and the memorisation check: samples (N, ...) as float32 on the CPU
        -> features (N, d) in which distances between samples mean something (pixels at a low resolution,
        statistics of a log-mel). None: core's default, the samples flattened, their trailing axes
        average-pooled to at most 4096 values (contract version 9)."""
        return None

    def write_interpolation(self, paths: torch.Tensor, path: Path, config: Any) -> list[Path] | None:
        """Called by ``mmgan explore``: ``paths`` (rows, steps, ...) are samples along interpolation paths (one
        path per row); write them at ``path`` (add the suffix) as one picture or sound, and return the files.
        None: core writes each row with :meth:`write_samples` (contract version 9)."""
        return None

    def generator_loss_terms(self, ctx: LossContext) -> dict[str, torch.Tensor] | None:
        """Called in every generator update of this modality: extra weighted loss terms (a reconstruction
        loss, feature matching), each logged as ``<modality>/g/<name>``."""
        return None

    def discriminator_loss_terms(self, ctx: LossContext) -> dict[str, torch.Tensor] | None:
        """Called in every discriminator update of this modality: extra terms (a gradient penalty), each
        logged as ``<modality>/d/<name>``; ``ctx.fake`` is detached."""
        return None

    def evaluate(self, ctx: EvalContext) -> dict[str, Any] | None:
        """Called by ``mmgan eval`` and every ``train.eval_every`` steps: ``{name: value}`` metrics of this
        modality's generator (a number, or a mapping such as a verdict with its statistic); declare which way
        each number is better in ``metric_goals``. Raise ``MetricError`` when no meaningful number exists."""
        return None

    def report_section(self, ctx: ReportContext) -> ReportSection | None:
        """Called by ``mmgan report`` for each run of this modality: the section showing its samples."""
        return None

    def onnx_module(self, generator: nn.Module, config: Any) -> nn.Module | None:
        """Called by ``mmgan export --format onnx``: a module from the generator's input to a sample that ONNX
        can express, computing what ``generator(modality, input)`` computes (ops ONNX lacks, such as complex
        FFTs, rewritten with ones it has). None: the generator as it is. Raise ``MMGANError`` with one line to
        say why this modality cannot be exported (contract version 8)."""
        return None

    def onnx_metadata(self, config: Any) -> Mapping[str, Any]:
        """Called by ``mmgan export --format onnx``: what a program running the file needs to know beyond the
        modality's config, which the file holds anyway (a vocoder's sample rate and mel definition): values
        that JSON can write, stored as the file's metadata (contract version 8)."""
        return {}

    # ---- registration --------------------------------------------------------------------------------

    @hookimpl
    def mmgan_register_modalities(self, register: Callable[[Any], None]) -> None:
        register(self)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give the subclass ``mmgan_loss_terms`` if it writes a loss-term method, and
        ``mmgan_register_metrics`` if it declares ``metric_goals`` (so ``mmgan plugins`` lists them)."""
        super().__init_subclass__(**kwargs)
        if any(getattr(cls, m) is not getattr(ModalityPlugin, m) for m in _LOSS_METHODS.values()):
            cls.mmgan_loss_terms = hookimpl(_loss_terms)
        if cls.metric_goals:
            cls.mmgan_register_metrics = hookimpl(_register_metrics)


_LOSS_METHODS = {"g": "generator_loss_terms", "d": "discriminator_loss_terms"}


def _loss_terms(self: ModalityPlugin, ctx: LossContext) -> dict[str, Any] | None:
    if ctx.modality != self.name:
        return None
    return getattr(self, _LOSS_METHODS[ctx.kind])(ctx)


def _register_metrics(self: ModalityPlugin, register: Callable[[str, str, str], None]) -> None:
    for metric, goal in self.metric_goals.items():
        register(self.name, metric, goal)
