"""What plugins are handed: the contexts of a loss term, an evaluation and a report section, and the
sections they hand back. Light (no torch at import): plugins import this whenever the CLI starts.

In every context ``ctx.modality`` is a :class:`ModalityName`: a ``str`` (the modality's name, so
``ctx.modality == "speech"`` and ``f"{ctx.modality}/..."`` work as they always did) that also carries the
registered :class:`~mmgan.contract.modality.Modality` (``ctx.modality.name``, ``ctx.modality.sample_input``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmgan.contract.modality import Modality
from mmgan.errors import PluginError

if TYPE_CHECKING:
    import pluggy
    import torch
    from torch import nn

# offsets keep the real-sample choice and the generator noise independent streams of one seed
_NOISE_SEED_OFFSET = 1_000_003


class ModalityName(str):
    """A modality's name that also carries its registered :class:`Modality` (``declaration``, None where only
    the name is known): compares, hashes and formats as the name; other attributes are the declaration's."""

    declaration: Modality | None

    def __new__(cls, modality: str | Modality, declaration: Modality | None = None) -> ModalityName:
        if isinstance(modality, ModalityName) and declaration is None:
            return modality
        if isinstance(modality, Modality):
            modality, declaration = modality.name, modality
        named = super().__new__(cls, modality)
        named.declaration = declaration
        return named

    @property
    def name(self) -> str:
        """The modality's name as a plain ``str``."""
        return str(self)

    def __getattr__(self, attribute: str) -> Any:  # only for what a str lacks: the declaration's fields
        declaration = self.__dict__.get("declaration")
        if declaration is None or attribute.startswith("__"):
            raise AttributeError(f"modality {str(self)!r} has no attribute {attribute!r}")
        return getattr(declaration, attribute)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ModalityName, (str(self), self.__dict__.get("declaration")))


class LossContext:
    """What extra loss terms see, once per modality per step.

    In the discriminator step ``fake`` is detached and ``d_fake`` comes from it; in the generator step
    ``fake`` carries gradients to G and the discriminator's parameters are frozen. ``d_real`` is the
    discriminator's output on ``real``, computed on first use in the generator step (with the freshly
    updated D, as feature matching wants). ``discriminator(x)`` runs this modality's D again.

    ``adversarial`` is False before the modality's ``adversarial_start``: D is not active yet, only
    the generator step runs, and a term that needs D should return nothing (touching ``d_fake``,
    ``d_real`` or ``discriminator`` then raises ``DiscriminatorInactive``, and the engine skips that
    plugin's terms for the step). Added in contract version 3.

    Fields: ``modality`` (a :class:`ModalityName`), ``config`` (the modality's config), ``step`` (0-based),
    ``kind`` (``"d"`` or ``"g"``), ``real``, ``fake``, ``generator_input``, ``seed``, ``rank``, ``adversarial``.
    """

    def __init__(self, modality: str | Modality, config: Any, step: int, real: torch.Tensor, fake: torch.Tensor,
                 generator_input: torch.Tensor, d_fake: Any, discriminator: Callable[[torch.Tensor], Any],
                 d_real: Any = None, seed: int = 0, rank: int = 0, kind: str = "",
                 plugin_configs: Mapping[str, Any] | None = None, adversarial: bool = True) -> None:
        self.seed, self.rank, self.kind, self.adversarial = seed, rank, kind, adversarial
        self._plugin_configs = plugin_configs or {}
        self.modality = ModalityName(modality)
        self.config = config
        self.step = step
        self.real = real
        self.fake = fake
        self.generator_input = generator_input
        self._d_fake = d_fake
        self._discriminator = discriminator
        self._d_real = d_real

    def settings(self, section: str) -> Any:
        """This run's ``[section]``: the config dataclass a plugin registered with ``mmgan_register_config``."""
        if section not in self._plugin_configs:
            known = ", ".join(sorted(self._plugin_configs)) or "none"
            raise PluginError(f"no config section [{section}] in this run (plugin sections: {known}); register "
                              "it with mmgan_register_config")
        return self._plugin_configs[section]

    def rng(self, name: str, device: torch.device | str | None = None) -> torch.Generator:
        """A random generator for the plugin ``name`` (your plugin's name, or any fixed string), seeded
        from the run seed, the step, the process rank, the modality, the step half and ``name``.

        Draw a loss term's random numbers from it: a resumed run then draws exactly what an unbroken one
        drew (nothing to save), and another plugin installed beside yours does not change your draws.
        ``device`` is where the generator lives (``torch.randn(..., generator=g, device=...)`` wants it
        on the tensor's device); the default is the real batch's device.
        """
        import torch

        key = f"{self.seed}/{self.step}/{self.rank}/{self.modality}/{self.kind}/{name}".encode()
        seed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & (2**63 - 1)
        device = torch.device(device) if device is not None else self.real.device
        return torch.Generator(device=device).manual_seed(seed)

    def _active(self, what: str) -> None:
        if not self.adversarial:
            raise DiscriminatorInactive(f"{self.modality}: {what} before {self.modality}.adversarial_start")

    @property
    def d_fake(self) -> Any:
        """D's output on ``fake`` (raises ``DiscriminatorInactive`` before the adversarial start)."""
        self._active("d_fake")
        return self._d_fake

    @property
    def discriminator(self) -> Callable[[torch.Tensor], Any]:
        """``discriminator(x)`` runs this modality's D again (for a gradient penalty, say)."""
        self._active("discriminator")
        return self._discriminator

    @property
    def d_real(self) -> Any:
        """D's output on ``real``; in the generator step computed on first use, with the updated D."""
        self._active("d_real")
        if self._d_real is None:
            self._d_real = self._discriminator(self.real)
        return self._d_real


class DiscriminatorInactive(Exception):  # noqa: N818 - a signal to the engine, not an error to report
    """Raised by a ``LossContext`` when a loss term asks for D before the modality's adversarial start."""


LAYOUTS = ("slider", "stack")
STEP_FILE = re.compile(r"^step_(\d{6,})$")


@dataclass(frozen=True)
class ReportItem:
    """One cell: a caption over a picture, a sound, or both (a clip and its spectrogram).

    ``image`` and ``audio`` are files: the run's own (core copies them into the report) or ones the
    plugin wrote with :meth:`ReportContext.file`.
    """

    caption: str
    image: Path | None = None
    audio: Path | None = None


@dataclass
class ReportGroup:
    """Items shown together, ``columns`` to a row: the grid of one step, the clips of one step."""

    title: str
    items: list[ReportItem]
    step: int | None = None
    columns: int = 1


@dataclass
class ReportSection:
    """A plugin's part of the report for one modality.

    ``highlights`` are shown first and always (the best step, the last one); ``groups`` follow, by
    ``layout``: ``"slider"`` shows one group at a time with a step slider (a sequence of grids),
    ``"stack"`` lists them all, each one folded but the last. ``text`` is a paragraph of plain text.
    """

    title: str
    groups: list[ReportGroup] = field(default_factory=list)
    highlights: list[ReportGroup] = field(default_factory=list)
    layout: str = "slider"
    text: str = ""

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"ReportSection.layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")

    @classmethod
    def picture_per_step(cls, title: str, pictures: Mapping[int, Path], best_step: int | None = None,
                         text: str = "") -> ReportSection:
        """The usual section of a modality whose samples are one picture per step (a grid, a scatter
        plot): the best step's and the last step's pictures first, then every step on a slider."""
        steps = sorted(pictures)
        highlights = []
        last = steps[-1] if steps else None
        if best_step is not None and steps:
            shown = nearest_step(steps, best_step)
            caption = f"step {shown}" if shown == best_step else f"step {shown}, the sample step nearest {best_step}"
            heading = f"best and last (step {best_step})" if shown == last else f"best (step {best_step})"
            highlights.append(ReportGroup(heading, [ReportItem(caption, pictures[shown])], shown))
        if last is not None and not (highlights and highlights[0].step == last):
            highlights.append(ReportGroup(f"last (step {last})", [ReportItem(f"step {last}", pictures[last])], last))
        groups = [ReportGroup(f"step {s}", [ReportItem(f"step {s}", pictures[s])], s) for s in steps]
        return cls(title, groups=groups, highlights=highlights, layout="slider", text=text)


def nearest_step(steps: list[int], step: int) -> int:
    """The step of ``steps`` closest to ``step`` (the earlier one on a tie)."""
    return min(steps, key=lambda s: (abs(s - step), s))


@dataclass
class ReportContext:
    """What ``mmgan_report_section`` receives: one modality of one run, read-only, and where to write.

    ``best`` is ``{"metric", "goal", "value", "step"}`` of the run's best export (``select_by``), or None;
    ``steps`` are the steps of the files in ``samples/<modality>/``; ``settings`` is the run's whole
    config.toml as read (``settings["train"]["num_samples"]``).
    """

    modality: ModalityName  # a str (its name) that carries the registered Modality
    config: Any  # the modality's config dataclass as the run was trained; None where it cannot be read
    run_dir: Path
    out_dir: Path
    steps: list[int]
    best: dict[str, Any] | None
    last_step: int | None
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = 0
    processes: int = 1
    pm: pluggy.PluginManager | None = field(default=None, repr=False)
    # reads the first n real samples of the run's source (the report fills it); None: no real samples
    read_real: Callable[[int], torch.Tensor | None] | None = field(default=None, repr=False)
    _real: dict[int, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.modality = ModalityName(self.modality)

    @property
    def best_step(self) -> int | None:
        """The step of the run's best export (``select_by``), or None."""
        return int(self.best["step"]) if self.best and "step" in self.best else None

    @property
    def samples_dir(self) -> Path:
        """``RUN/samples/<modality>``: where the run wrote this modality's samples."""
        return self.run_dir / "samples" / self.modality

    def sample_files(self, suffix: str) -> dict[int, Path]:
        """``{step: path}`` of ``samples/<modality>/step_NNNNNN<suffix>`` (files being written are left out)."""
        found = {}
        if self.samples_dir.is_dir():
            for path in self.samples_dir.glob(f"step_*{suffix}"):
                match = STEP_FILE.match(path.name[: -len(suffix)] if suffix else path.name)
                if match and path.is_file():
                    found[int(match.group(1))] = path
        return dict(sorted(found.items()))

    def file(self, name: str) -> Path:
        """A path in this section's own directory of the report, for a file the plugin writes."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return self.out_dir / name

    def real_samples(self, n: int) -> torch.Tensor | None:
        """The first ``n`` real samples, as the run's sample files showed them beside the generated ones
        (read again from the run's data source; torch is imported). None when the source cannot be read
        here (moved, another machine's path): the report then goes without them."""
        if n not in self._real:
            self._real[n] = self.read_real(n) if self.read_real is not None else None
        return self._real[n]


@dataclass
class EvalContext:
    """What a modality's ``evaluate`` (and ``mmgan_evaluate``) receives: one modality's generator and where
    its real samples come from.

    ``generator(inputs)`` returns samples (eval mode, on ``device``); ``data`` is the real-data source
    string (``builtin:<name>``, a folder, ...); ``options`` holds extra settings such as
    ``{"inception_weights": path}``. ``real_batches()`` and ``fake_batches()`` are deterministic
    functions of ``seed``. ``read_real(ctx)`` opens the real data (core fills it: ``mmgan.api.EvalContext``
    reads the source through its plugin).
    """

    modality: ModalityName | Modality
    config: Any
    generator: nn.Module
    data: str
    num_samples: int
    batch_size: int = 250
    seed: int = 0
    device: torch.device | str = "cpu"
    options: dict[str, Any] = field(default_factory=dict)
    pm: pluggy.PluginManager | None = None
    read_real: Callable[[EvalContext], Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.modality = ModalityName(self.modality)
        if self.modality.declaration is None:
            raise PluginError(f"EvalContext: modality {self.modality!r} must be the registered Modality "
                              "(mmgan.api.get_modality(name)), not its name")
        import torch

        self.device = torch.device(self.device)

    @property
    def name(self) -> str:
        """The modality's name."""
        return self.modality.name

    def real_dataset(self) -> torch.utils.data.Dataset:
        """The real-data source opened with ``seed``: the plugin's dataset, or a stream of WebDataset shards."""
        if self.read_real is None:
            raise PluginError(f"{self.name}: this EvalContext cannot read real data (no read_real): build it "
                              "with mmgan.api.EvalContext or mmgan.api.context_for_run")
        return self.read_real(self)

    def real_batches(self) -> Iterator[torch.Tensor]:
        """At most ``num_samples`` real samples (a seeded random subset), float32 on the CPU, in batches."""
        import torch

        dataset = self.real_dataset()
        n = min(self.num_samples, len(dataset))
        if isinstance(dataset, torch.utils.data.IterableDataset):  # shards: the stream is already shuffled
            samples = iter(dataset)
            for start in range(0, n, self.batch_size):
                yield torch.stack([next(samples) for _ in range(min(self.batch_size, n - start))]).float()
            return
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(self.seed))[:n].tolist()
        for start in range(0, n, self.batch_size):
            yield torch.stack([dataset[i] for i in order[start:start + self.batch_size]]).float()

    def fake_batches(self) -> Iterator[torch.Tensor]:
        """``num_samples`` generated samples, float32 on the CPU, in batches.

        An unconditional modality samples ``sample_input`` with a seeded RNG; a conditional one (no
        ``sample_input``) runs the generator on ``make_input`` of ``real_batches()``, in the same order,
        so the i-th fake is the reconstruction of the i-th real sample.
        """
        import torch

        gen = torch.Generator().manual_seed(self.seed + _NOISE_SEED_OFFSET)
        if self.modality.sample_input is None:
            for real in self.real_batches():
                with torch.no_grad():
                    inputs = self.modality.make_input(real, self.config, gen)
                yield self._generate(inputs)
            return
        for start in range(0, self.num_samples, self.batch_size):
            n = min(self.batch_size, self.num_samples - start)
            with torch.no_grad():
                inputs = self.modality.sample_input(n, self.config, gen)
            yield self._generate(inputs)

    def paired_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(real, fake)`` batches for a conditional modality: the fake is generated from the real."""
        import torch

        gen = torch.Generator().manual_seed(self.seed + _NOISE_SEED_OFFSET)
        for real in self.real_batches():
            with torch.no_grad():
                inputs = self.modality.make_input(real, self.config, gen)
            yield real, self._generate(inputs)

    def _generate(self, inputs: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.no_grad():
            return self.generator(inputs.to(self.device)).float().cpu()
