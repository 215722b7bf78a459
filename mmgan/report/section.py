"""What a plugin hands the report (``mmgan_report_section``): a section of pictures and sounds that core's
template lays out, and the context it is asked in. No torch or matplotlib here: plugins import this
module when they build their section, and it must stay as light as the plugin modules themselves."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pluggy
    import torch

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
            title = f"best and last (step {best_step})" if shown == last else f"best (step {best_step})"
            highlights.append(ReportGroup(title, [ReportItem(caption, pictures[shown])], shown))
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

    modality: str
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
    _real: dict[int, Any] = field(default_factory=dict, repr=False)

    @property
    def best_step(self) -> int | None:
        return int(self.best["step"]) if self.best and "step" in self.best else None

    @property
    def samples_dir(self) -> Path:
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
            self._real[n] = self._read_real(n)
        return self._real[n]

    def _read_real(self, n: int) -> torch.Tensor | None:
        import logging

        import torch

        from mmgan.contract.manager import get_plugin_manager
        from mmgan.data.loading import open_training_data
        from mmgan.data.shards import ShardStream
        from mmgan.errors import MMGANError

        if self.config is None:
            return None
        try:
            train = self.settings.get("train", {})  # how the run split its shards, so the preview is the same
            dataset = open_training_data(self.pm or get_plugin_manager(), self.modality, self.config, self.seed,
                                         0, self.processes, int(train.get("num_workers", 0)),
                                         int(train.get("shuffle_buffer", 512)))
            count = min(n, len(dataset))
            if isinstance(dataset, ShardStream):
                return torch.stack(dataset.preview(count))
            return torch.stack([dataset[i] for i in range(count)])
        except (MMGANError, OSError, ValueError) as exc:
            logging.getLogger("mmgan").info("report: no real %s samples from %s: %s", self.modality,
                                            getattr(self.config, "data", "?"), exc)
            return None
