"""Resumable checkpoints and exported generators, both written atomically.

A checkpoint is a directory ``checkpoints/step_NNNNNN`` written under a hidden temporary name and
renamed into place once complete, so a crash while saving leaves the previous checkpoint usable.
Exported generators are safetensors plus a JSON config: loading them never unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mmgan.errors import CheckpointError, StorageError, first_line
from mmgan.files import atomic_path, free_bytes, writing

CHECKPOINT_RE = re.compile(r"^step_(\d{6,})$")
PROGRESS_FILE = "mmgan_progress.json"
STATE_FILE = "mmgan_state.safetensors"


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (a directory without its progress file is ignored)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if CHECKPOINT_RE.match(p.name) and (p / PROGRESS_FILE).is_file()]
    return sorted(found, key=lambda p: int(CHECKPOINT_RE.match(p.name).group(1)))


def checkpoint_step(directory: Path) -> int:
    """The step of a checkpoint directory ``step_NNNNNN``."""
    return int(Path(directory).name.removeprefix("step_"))


def latest_checkpoint(run_dir: Path) -> Path:
    """The newest complete checkpoint, or a CheckpointError naming the run directory."""
    found = checkpoint_dirs(run_dir)
    if not found:
        raise CheckpointError(f"run {run_dir} has no checkpoint to resume from (looked in {run_dir}/checkpoints)")
    return found[-1]


def staging_dir(run_dir: Path, step: int) -> Path:
    """Where a checkpoint is written before the rename; the same name on every rank."""
    return Path(run_dir) / "checkpoints" / f".step_{step:06d}.partial"


def remove_staging(run_dir: Path) -> None:
    """Delete staging directories that a crash while saving left behind."""
    for partial in (Path(run_dir) / "checkpoints").glob(".step_*.partial"):
        shutil.rmtree(partial, ignore_errors=True)


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, shown: Path | None = None) -> None:
    """``safetensors`` ``save_file``, with a failed write (it raises its own error type, not OSError, on
    a full disk) turned into a ``StorageError`` naming ``shown`` (default ``path``) and the free space."""
    try:
        save_file(tensors, str(path))
    except SafetensorError as exc:
        free = free_bytes(Path(path).parent)
        left = "" if free is None else f"; {free / 2**20:.1f} MiB free there"
        raise StorageError(f"cannot write {shown or path}: {exc}{left}") from exc


def write_extra_state(directory: Path, step: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write mmgan's own resume state (EMA weights, RNG state, step) beside Accelerate's files."""
    with writing(directory / STATE_FILE):
        save_tensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, directory / STATE_FILE)
    # the progress file is written last: its presence marks the checkpoint complete
    with writing(directory / PROGRESS_FILE):
        (directory / PROGRESS_FILE).write_text(json.dumps({"step": step, **meta}), encoding="utf-8")


def publish_checkpoint(run_dir: Path, step: int, keep: int, protect: int | None = None) -> Path:
    """Rename a fully written staging directory into place and delete all but the newest ``keep``; with
    ``protect``, the ones after that step and the newest at or before it are kept too (the collapse
    watchdog's rollback targets: a collapse found later has its onset after ``protect``)."""
    final = Path(run_dir) / "checkpoints" / f"step_{step:06d}"
    with writing(final):
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging_dir(run_dir, step), final)
    found = checkpoint_dirs(run_dir)
    kept = []
    if protect is not None:
        steps = [checkpoint_step(d) for d in found]
        kept = [d for d, s in zip(found, steps, strict=True) if s > protect]
        kept += [d for d, s in zip(found, steps, strict=True) if s <= protect][-1:]
    for old in found[:-keep]:
        if old not in kept:
            shutil.rmtree(old, ignore_errors=True)
    return final


def read_extra_state(directory: Path) -> tuple[int, dict[str, torch.Tensor], dict[str, Any]]:
    """Step, tensors and metadata saved by ``write_extra_state``; a CheckpointError if corrupt."""
    try:
        meta = json.loads((directory / PROGRESS_FILE).read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError(f"{PROGRESS_FILE} holds {type(meta).__name__}, not an object")
        tensors = load_file(str(directory / STATE_FILE))
        step = int(meta.pop("step"))
    except (OSError, ValueError, KeyError, TypeError, RecursionError, SafetensorError) as exc:
        raise CheckpointError(f"checkpoint {directory} is corrupt: {type(exc).__name__}: {first_line(exc)}") from None
    return step, tensors, meta


def export_generator(
    export_dir: Path, modality: str, state: dict[str, torch.Tensor], config: dict[str, Any]
) -> Path:
    """Write ``<modality>.safetensors`` and ``<modality>.json`` for ``mmgan generate``; returns the weights."""
    export_dir = Path(export_dir)
    weights = export_dir / f"{modality}.safetensors"
    with atomic_path(weights) as tmp:
        save_tensors(state, tmp, shown=weights)
        digest = file_sha256(tmp)
    # the weights' checksum in the JSON: bytes damaged later (a disk, a copy) are found on load
    with atomic_path(export_dir / f"{modality}.json") as tmp:
        tmp.write_text(json.dumps({**config, WEIGHTS_SHA256: digest}, indent=2), encoding="utf-8")
    return weights


WEIGHTS_SHA256 = "weights_sha256"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def exported_modalities(run_dir: Path) -> list[str]:
    """Modalities with an exported generator in ``run_dir/export``."""
    export_dir = Path(run_dir) / "export"
    if not export_dir.is_dir():
        return []
    return sorted(p.stem for p in export_dir.glob("*.json") if p.with_suffix(".safetensors").is_file())


BEST_DIR = "best"


def export_dir_of(run_dir: Path, modality: str, last: bool = False) -> Path:
    """Where ``modality``'s export to use lies: ``export/best/`` when the run kept a best one (by
    ``<modality>.select_by``) and ``last`` is false, else ``export/`` (the last step's)."""
    export_dir = Path(run_dir) / "export"
    best = export_dir / BEST_DIR
    if not last and (best / f"{modality}.safetensors").is_file() and (best / f"{modality}.json").is_file():
        return best
    return export_dir


def read_export(run_dir: Path, modality: str, last: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and config of an exported generator (the best one unless ``last``), or a CheckpointError
    naming the file."""
    export_dir = export_dir_of(run_dir, modality, last)
    weights, meta = export_dir / f"{modality}.safetensors", export_dir / f"{modality}.json"
    if not weights.is_file() or not meta.is_file():
        raise CheckpointError(f"run {run_dir} has no exported {modality} generator (expected {weights})")
    try:
        config = json.loads(meta.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError(f"{meta.name} holds {type(config).__name__}, not an object")
        expected = config.pop(WEIGHTS_SHA256, None)  # exports written before checksums have none
        if expected is None:
            logging.getLogger("mmgan").warning("%s has no checksum of %s (written before mmgan recorded one, or "
                                               "removed): its weights are loaded unchecked", meta, weights.name)
        elif file_sha256(weights) != expected:
            raise ValueError(f"{weights.name} does not match the checksum in {meta.name} (damaged or replaced)")
        state = load_file(str(weights))
    except RecursionError:  # JSON nested thousands deep: crafted, not written by mmgan
        raise CheckpointError(f"exported generator in {export_dir} is corrupt: {meta.name} is nested too deep "
                              "to be an mmgan export") from None
    except (OSError, ValueError, SafetensorError) as exc:
        raise CheckpointError(f"exported generator in {export_dir} is corrupt: {exc}") from None
    return state, config
