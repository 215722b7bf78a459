"""Writing files safely: a crash or a full disk mid-write never leaves a half-written output behind,
and a write that fails is one line naming the path (``StorageError``), not a traceback."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from mmgan.errors import ConfigError, StorageError

TEMP_SUFFIX = ".tmp"


def describe_os_error(path: str | os.PathLike[str], exc: OSError) -> str:
    """``cannot write PATH: REASON`` with a hint for the usual causes (full disk, read-only, permissions)."""
    reason = exc.strerror or str(exc)
    hint = {errno.ENOSPC: "free some space or write elsewhere",
            errno.EDQUOT: "free some space or write elsewhere",
            errno.EROFS: "choose a writable location",
            errno.EACCES: "choose a location you may write to",
            errno.EPERM: "choose a location you may write to"}.get(exc.errno or 0)
    where = exc.filename if exc.filename and Path(str(exc.filename)) != Path(path) else None
    text = f"cannot write {path}: {reason}"
    if where:
        text += f" ({where})"
    return f"{text}; {hint}" if hint else text


@contextlib.contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an ``OSError`` raised inside into a ``StorageError`` naming ``path``."""
    try:
        yield
    except OSError as exc:
        raise StorageError(describe_os_error(path, exc)) from exc


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; on success it replaces ``path`` in one rename.

    If the body raises, the temporary is removed and whatever was at ``path`` before is left untouched;
    an ``OSError`` (a full disk, a read-only directory) becomes a ``StorageError`` naming ``path``.
    The temporary is named ``.<name>.<random>.tmp``: :func:`remove_temporaries` clears the ones a
    killed process left. (Checkpoint directories have their own staging scheme, in ``mmgan.checkpoint``.)
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")
    try:
        with writing(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def remove_temporaries(directory: Path) -> list[Path]:
    """Delete the ``atomic_path`` temporaries a killed process left in ``directory`` (not below it)."""
    removed = []
    if directory.is_dir():
        for stale in directory.glob(f".*{TEMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                stale.unlink()
                removed.append(stale)
    return removed


def free_bytes(path: Path) -> int | None:
    """Free space on the filesystem of ``path`` (or of its nearest existing parent); None if unknown."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def tree_bytes(path: Path) -> int:
    """The total size of the files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def check_writable(path: str | os.PathLike[str], what: str = "output") -> None:
    """Fail fast, before hours of work, if ``path`` cannot be created: its nearest existing parent must
    be a writable directory (a read-only mount or a file in the way is a ``StorageError`` now, not after
    the results are computed)."""
    target = Path(path)
    if target.is_dir():
        raise StorageError(f"cannot write {what} {target}: it is a directory; give a file name")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise StorageError(f"cannot write {what} {target}: {parent} is not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                # the operating system's own words, as a failed write would say them
                reason = os.strerror(errno.EROFS if _read_only(parent) else errno.EACCES)
                raise StorageError(f"cannot write {what} {target}: {parent} is not writable ({reason})")
            if parent == target.parent:  # where the file goes: create and remove a probe, as the write will
                _probe(parent, target, what)
            return


def _probe(directory: Path, target: Path, what: str) -> None:
    """Create and remove an empty temporary file in ``directory``: some filesystems (/proc, a full quota)
    pass the permission check and still refuse a new file."""
    probe = directory / f".{target.name}.{uuid.uuid4().hex[:12]}.probe"
    try:
        probe.touch(exist_ok=False)
    except OSError as exc:
        raise StorageError(f"cannot write {what} {target}: {directory} refuses new files "
                           f"({exc.strerror or type(exc).__name__})") from None
    probe.unlink(missing_ok=True)


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


# what a run directory holds of its own: a command's output may not replace any of it
RUN_FILES = ("config.toml", "metrics.jsonl", "run.json", ".lock", ".lock.held")
RUN_FOLDERS = ("checkpoints", "export", "samples", "trackers", "report")


def check_not_overwriting(path: str | os.PathLike[str], option: str, run_dir: str | os.PathLike[str] | None = None,
                          inputs: tuple[str | os.PathLike[str], ...] = ()) -> None:
    """A one-line ConfigError, before any work, when a command's output ``path`` would replace one of its
    ``inputs`` or one of the files a run directory ``run_dir`` holds of its own (its config, metrics, facts,
    lock, checkpoints, exports, samples, trackers, report)."""
    target = Path(path)
    for source in inputs:
        if target.exists() and Path(source).exists() and os.path.samefile(target, source):
            raise ConfigError(f"{option} {target} is the input {source}: write to another file")
    if run_dir is None:
        return
    run, resolved = Path(run_dir).resolve(), target.resolve()
    if resolved == run or run not in resolved.parents:
        return
    inside = resolved.relative_to(run).parts
    if (len(inside) == 1 and inside[0] in RUN_FILES) or inside[0] in RUN_FOLDERS:
        raise ConfigError(f"{option} {target} is one of the run's own files ({inside[0]}): choose another path")


def env_seconds(name: str, default: float, zero_means: str | None = None) -> float:
    """A duration in seconds from environment variable ``name`` (``default`` when unset or empty): a finite
    number above 0, or 0 too where ``zero_means`` says what 0 does; else a one-line ConfigError naming it."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not (seconds >= 0 if zero_means else seconds > 0) or seconds == float("inf"):
        wanted = f"a number of seconds, 0 or more (0: {zero_means})" if zero_means else "a positive number of seconds"
        raise ConfigError(f"{name}={text!r}: expected {wanted}")
    return seconds
