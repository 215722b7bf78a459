"""Experiment trackers through Accelerate (``train.log_with``), and the run's facts (``run.json``).

Losses and metrics go through Accelerate's own tracker API (``init_trackers``, ``log``); the sample
files the plugins write go to each tracker as images (PNG/JPEG) and audio (WAV), through the tracker
object where Accelerate has no call for it (audio). The tracker packages are optional extras.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmgan.config.trackers import EXTRAS, TRACKERS, check_trackers  # noqa: F401 (re-exported)
from mmgan.errors import MMGANError
from mmgan.files import atomic_path

log = logging.getLogger("mmgan")

RUN_FACTS = "run.json"

# what to do when a tracker cannot start (appended to its own error)
START_HINTS = {"wandb": " (log in with `wandb login` or WANDB_API_KEY, log locally with WANDB_MODE=offline, "
                        "or give a slow server longer with WANDB_INIT_TIMEOUT=seconds)"}


class TrackerError(MMGANError):
    """A tracker of ``train.log_with`` could not start."""


def flat_config(sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``{"train.lr_g": 0.0002, ...}``: what trackers take as hyperparameters (lists as strings)."""
    flat = {}
    for section, values in sections.items():
        for key, value in values.items():
            flat[f"{section}.{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def init_kwargs(run_dir: Path) -> dict[str, dict[str, Any]]:
    """What each tracker's start-up is given: wandb names the run after its directory, keeps its local files in
    ``RUN/trackers`` (not the working directory) and, unless WANDB_INIT_TIMEOUT says otherwise, gives up on an
    unreachable server after 30 s instead of its own 90."""
    wandb: dict[str, Any] = {"name": Path(run_dir).name, "dir": str(Path(run_dir) / "trackers")}
    if "WANDB_INIT_TIMEOUT" not in os.environ:
        wandb["settings"] = {"init_timeout": 30}
    return {"wandb": wandb}


class Trackers:
    """The run's trackers (rank 0 only, as Accelerate logs): scalars, then sample images and audio."""

    def __init__(self, accelerator: Any, names: Sequence[str], run_dir: Path, config: dict[str, dict[str, Any]]):
        self.accelerator, self.names = accelerator, list(names)
        if not self.names:
            return
        if "wandb" in self.names and accelerator.is_main_process:
            (Path(run_dir) / "trackers").mkdir(parents=True, exist_ok=True)  # wandb's dir must exist
        try:
            accelerator.init_trackers("mmgan", config=flat_config(config), init_kwargs=init_kwargs(run_dir))
        except Exception as exc:  # each tracker package has its own errors (no key, no network): one line here
            failed = []
            for tracker in accelerator.trackers:  # close the ones that started; name the first that did not
                try:
                    tracker.finish()
                except Exception:  # noqa: BLE001 (this one never started)
                    failed.append(getattr(tracker, "name", None))
            accelerator.trackers.clear()
            name = next((n for n in failed if n in self.names), self.names[0])
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise TrackerError(f"train.log_with: the {name} tracker could not start: {reason}"
                               f"{START_HINTS.get(name, '')}; or leave it out of train.log_with") from exc

    def log(self, record: dict[str, float], step: int) -> None:
        if self.names:
            self.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)

    def log_samples(self, modality: str, paths: Sequence[Path], step: int) -> None:
        """The sample files a plugin wrote at ``step``: images and audio, a few of each."""
        if not self.names or not self.accelerator.is_main_process:
            return
        images = [p for p in paths if p.suffix.lower() in (".png", ".jpg", ".jpeg")][:4]
        clips = [p for p in paths if p.suffix.lower() == ".wav"][:4]
        for name in self.names:
            tracker = self.accelerator.get_tracker(name, unwrap=True)
            # one tag per kind of file, over steps (a second file of a kind in one step: its own tag)
            for i, path in enumerate(images):
                self._image(name, tracker, f"{modality}/samples" + (f"/{i}" if i else ""), path, step)
            for i, path in enumerate(clips):
                self._audio(name, tracker, f"{modality}/audio" + (f"/{i}" if i else ""), path, step)

    @staticmethod
    def _image(name: str, tracker: Any, tag: str, path: Path, step: int) -> None:
        from PIL import Image

        with Image.open(path) as im:
            pixels = np.asarray(im.convert("RGB"))
        if name == "tensorboard":
            tracker.add_image(tag, pixels, global_step=step, dataformats="HWC")
        elif name == "wandb":
            import wandb

            tracker.log({tag: wandb.Image(pixels)}, step=step)
        else:
            log.debug("%s: no image logging in mmgan for this tracker", name)

    @staticmethod
    def _audio(name: str, tracker: Any, tag: str, path: Path, step: int) -> None:
        import scipy.io.wavfile

        rate, samples = scipy.io.wavfile.read(path)
        if samples.dtype.kind == "i":
            samples = samples / float(np.iinfo(samples.dtype).max)
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)  # mono, as the plugins write it
        if name == "tensorboard":
            import torch

            tracker.add_audio(tag, torch.from_numpy(samples)[None], global_step=step, sample_rate=rate)
        elif name == "wandb":
            import wandb

            tracker.log({tag: wandb.Audio(samples, sample_rate=rate)}, step=step)
        else:
            log.debug("%s: no audio logging in mmgan for this tracker", name)

    def close(self) -> None:
        """Flush and close the trackers after a run that did not end normally (``end_training`` does it
        otherwise, and also ends the process group, which a failing run must not do here)."""
        for tracker in self.accelerator.trackers:
            tracker.finish()


def _versions(plugins: dict[str, str]) -> dict[str, Any]:
    import accelerate
    import torch

    from mmgan import __version__

    return {"mmgan_version": __version__, "plugins": plugins, "torch": torch.__version__,
            "accelerate": accelerate.__version__, "python": platform.python_version()}


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class RunFacts:
    """``RUN/run.json``: what ran, where and when, written when a run (or a resumed session) starts and
    updated when it ends, so a report need not guess. One entry per session in ``sessions``."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / RUN_FACTS
        self.facts: dict[str, Any] = {}

    def start(self, plugins: dict[str, str], accelerator: Any, step: int, steps: int) -> None:
        try:
            old = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}
        except (OSError, ValueError):
            old = {}
        sessions = old.get("sessions", []) if isinstance(old, dict) else []
        session = {"started": now(), "ended": None, "status": "training", "from_step": step, "to_step": steps,
                   "processes": accelerator.num_processes, "device": str(accelerator.device),
                   "precision": accelerator.mixed_precision, "host": socket.gethostname(),
                   "command": " ".join(sys.argv)}
        self.facts = {**_versions(plugins), "started": (sessions[0]["started"] if sessions else session["started"]),
                      "ended": None, "status": "training", "step": step, "processes": session["processes"],
                      "device": session["device"], "precision": session["precision"], "host": session["host"],
                      "sessions": [*sessions, session]}
        self._write()

    def end(self, status: str, step: int) -> None:
        if not self.facts:
            return
        ended = now()
        self.facts.update(ended=ended, status=status, step=step)
        self.facts["sessions"][-1].update(ended=ended, status=status, to_step=step)
        try:
            self._write()
        except MMGANError as exc:  # the run's own error matters more than its facts
            log.warning("%s", exc)

    def note(self, key: str, value: Any) -> None:
        """Record ``key`` in run.json now (a collapse found, a rollback)."""
        if not self.facts:
            return
        self.facts[key] = value
        self._write()

    def _write(self) -> None:
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.facts, indent=2) + "\n", encoding="utf-8")
