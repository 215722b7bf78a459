"""Speech data sources: the built-in procedural speech-like set (``speech_like``) and folders of WAV files
(LJSpeech too).

Every item is a float32 tensor of shape (1, segment_length) in [-1, 1] at ``sample_rate``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mmgan.data.loading import check_int
from mmgan.errors import DataError
from mmgan_speech.audio import is_silent, read_wav_scaled
from mmgan_speech.speech_like import PEAK, SpeechLikeDataset, _check_segment

__all__ = [
    "BUILTIN_SOURCES",
    "SHORT_CLIP_POLICIES",
    "SkippedClip",
    "SpeechLikeDataset",
    "WavFolderDataset",
    "find_wav_files",
    "open_speech_source",
]

log = logging.getLogger("mmgan")

BUILTIN_SOURCES: tuple[str, ...] = ("speech",)
SHORT_CLIP_POLICIES: tuple[str, ...] = ("pad", "skip")
# --- folders of WAV files --------------------------------------------------------------------------------


def find_wav_files(root: str | Path) -> list[Path]:
    """The WAV files of a source: ``root`` itself if it is a .wav file, an LJSpeech root's clips in
    metadata order (``wavs/<id>.wav``), or every .wav under a folder (any case, recursive, sorted).

    Raises a one-line :class:`~mmgan.errors.DataError` when there is nothing to read.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"WAV source {root} does not exist")
    if root.is_file():
        if root.suffix.lower() != ".wav":
            raise DataError(f"WAV source {root} is neither a folder nor a .wav file")
        return [root]
    if not root.is_dir():
        raise DataError(f"WAV source {root} is not a folder")
    metadata = root / "metadata.csv"
    if metadata.is_file():
        if not (root / "wavs").is_dir():
            raise DataError(f"LJSpeech folder {root} has metadata.csv but no wavs/ directory")
        ids = []
        for line in metadata.read_text(encoding="utf-8", errors="replace").splitlines():
            clip_id = line.split("|", 1)[0].strip()
            if clip_id:
                ids.append(clip_id)
        if not ids:
            raise DataError(f"LJSpeech folder {root}: metadata.csv lists no clips")
        return [root / "wavs" / f"{clip_id}.wav" for clip_id in ids]
    found = sorted(
        (p for p in root.rglob("*") if p.suffix.lower() == ".wav" and p.is_file()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not found:
        raise DataError(f"no .wav files (any case, searched recursively) in {root}")
    return found


@dataclass(frozen=True)
class SkippedClip:
    """A file left out of a :class:`WavFolderDataset`: ``reason`` is "unreadable", "silent" or "short"."""

    path: Path
    reason: str
    detail: str


class WavFolderDataset(torch.utils.data.Dataset):
    """Windows of every usable WAV file under ``root`` (recursively, sorted), or of one WAV file.

    An LJSpeech root (``metadata.csv`` next to ``wavs/``) is read in metadata order from ``wavs/<id>.wav``.
    Each file is decoded once at construction to learn its length and peak; unreadable (non-WAV, truncated,
    undecodable) and silent clips are skipped, and clips shorter than one segment are zero-padded at the
    end (``short_clips="pad"``) or skipped (``"skip"``). A float clip beyond full scale is scaled down by its
    peak (``read_wav_scaled``), not clipped. All are counted in ``skipped`` / ``padded`` / ``scaled`` and
    summarised in one warning, not one per file.

    Item ``k`` is a (clip, window) pair: a clip of ``L`` samples gives ``ceil(L / segment_length)``
    windows spread evenly over it, each shifted by a jitter drawn from ``default_rng([seed, k])`` no larger
    than half the overlap, so the windows of one epoch always cover every sample and ``k`` alone fixes the
    item (exact resume). Clips are peak-normalised to 0.95 as a whole, then cut.
    """

    def __init__(self, root: str | Path, segment_length: int = 8192, sample_rate: int = 22050, seed: int = 0,
                 short_clips: str = "pad") -> None:
        self.root = Path(root)
        self.segment_length = _check_segment(segment_length)
        self.sample_rate = check_int("sample_rate", sample_rate, 1)
        self.seed = check_int("seed", seed, 0)
        if short_clips not in SHORT_CLIP_POLICIES:
            raise ValueError(f"short_clips must be one of {', '.join(SHORT_CLIP_POLICIES)}, got {short_clips!r}")
        self.short_clips = short_clips

        candidates = find_wav_files(self.root)
        self.files: list[Path] = []
        self.skipped: list[SkippedClip] = []
        self.padded: list[Path] = []
        self.scaled: list[tuple[Path, float]] = []  # float clips beyond full scale, and the peak each reached
        lengths, peaks = [], []
        for path in candidates:
            try:
                wave, over = read_wav_scaled(path, self.sample_rate)
            except DataError as exc:
                self.skipped.append(SkippedClip(path, "unreadable", str(exc)))
                continue
            if is_silent(wave):
                self.skipped.append(SkippedClip(path, "silent", "peak below -60 dBFS"))
                continue
            if wave.size < self.segment_length:
                if short_clips == "skip":
                    self.skipped.append(SkippedClip(path, "short", f"{wave.size} samples"))
                    continue
                self.padded.append(path)
            if over > 1.0:
                self.scaled.append((path, over))
            self.files.append(path)
            lengths.append(wave.size)
            peaks.append(float(np.max(np.abs(wave))))
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self._gains = PEAK / np.asarray(peaks, dtype=np.float64)
        windows = -(-self.lengths // self.segment_length)
        self._first_item = np.concatenate([[0], np.cumsum(windows)])

        summary = self._summary(len(candidates))
        if not self.files:
            raise DataError(f"none of the {len(candidates)} WAV files in {self.root} is usable: {summary}")
        if summary:
            log.warning("WAV source %s: %s", self.root, summary)
        self._cache: tuple[int, np.ndarray] | None = None  # the last decoded clip; windows come in runs

    def _summary(self, total: int) -> str:
        parts = []
        for reason, label in (("unreadable", "unreadable"), ("silent", "silent"),
                              ("short", f"shorter than {self.segment_length} samples")):
            hits = [s for s in self.skipped if s.reason == reason]
            if hits:
                parts.append(f"skipped {len(hits)} {label} (first: {self._name(hits[0].path)}: {hits[0].detail})")
        if self.padded:
            parts.append(f"zero-padded {len(self.padded)} shorter than {self.segment_length} samples "
                         f"(first: {self._name(self.padded[0])})")
        if self.scaled:
            path, peak = self.scaled[0]
            parts.append(f"scaled {len(self.scaled)} float clips beyond full scale down by their peak (first: "
                         f"{self._name(path)}: samples reach {peak:.4g}, {20 * np.log10(peak):.1f} dB beyond it)")
        return f"{'; '.join(parts)}; {len(self.files)} of {total} files used" if parts else ""

    def _name(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() if self.root.is_dir() else str(path)

    @property
    def skip_counts(self) -> dict[str, int]:
        """Files left out per reason ("unreadable", "silent", "short"), plus "padded" short clips kept."""
        counts = {"unreadable": 0, "silent": 0, "short": 0}
        for s in self.skipped:
            counts[s.reason] += 1
        counts["padded"] = len(self.padded)
        return counts

    def __len__(self) -> int:
        return int(self._first_item[-1])

    def window(self, k: int) -> tuple[int, int]:
        """(clip index into ``files``, start sample) of item ``k``; the start is 0 for a padded clip."""
        if not 0 <= k < len(self):
            raise IndexError(f"index {k} out of range for WavFolderDataset of length {len(self)}")
        clip = int(np.searchsorted(self._first_item, k, side="right")) - 1
        w = k - int(self._first_item[clip])
        count = int(self._first_item[clip + 1] - self._first_item[clip])
        slack = int(self.lengths[clip]) - self.segment_length
        if count == 1:  # length <= segment: the whole clip, zero-padded at the end if short
            return clip, 0
        spacing = slack / (count - 1)
        overlap = self.segment_length - spacing
        jitter = 0.0
        if 0 < w < count - 1:  # the first and last windows stay on the clip's ends
            jitter = (np.random.default_rng([self.seed, k]).random() - 0.5) * overlap
        return clip, int(round(min(max(w * spacing + jitter, 0.0), slack)))

    def __getitem__(self, k: int) -> torch.Tensor:
        clip, start = self.window(k)
        wave = self._decode(clip)
        out = np.zeros(self.segment_length, dtype=np.float32)
        piece = wave[start:start + self.segment_length]
        out[:piece.size] = piece * np.float32(self._gains[clip])
        return torch.from_numpy(out)[None, :]

    def clip_wave(self, clip: int) -> np.ndarray:
        """The whole clip ``clip`` (an index into ``files``) at ``sample_rate``, peak-normalised as items are."""
        return self._decode(clip) * np.float32(self._gains[clip])

    def clip_name(self, clip: int) -> str:
        return self._name(self.files[clip])

    def _decode(self, clip: int) -> np.ndarray:
        if self._cache is not None and self._cache[0] == clip:
            return self._cache[1]
        path = self.files[clip]
        try:
            wave, _ = read_wav_scaled(path, self.sample_rate)  # scaled as at construction, said once there
        except DataError as exc:  # changed or removed since construction: training cannot go on silently
            raise DataError(f"{exc} (it was readable when the dataset was opened)") from exc
        if wave.size != self.lengths[clip]:
            raise DataError(f"{path}: changed since the dataset was opened ({wave.size} samples, "
                            f"was {self.lengths[clip]}); restart the run")
        self._cache = (clip, wave)
        return wave


# --- entry point -----------------------------------------------------------------------------------------


def open_speech_source(source: str, segment_length: int, sample_rate: int, seed: int,
                       short_clips: str = "pad") -> torch.utils.data.Dataset:
    """Open ``"builtin:speech"`` (procedural, seeded by ``seed``), a folder of WAVs, an LJSpeech root or a WAV."""
    if source.startswith("builtin:"):
        name = source.removeprefix("builtin:")
        if name == "speech":
            return SpeechLikeDataset(segment_length, seed=seed, sample_rate=sample_rate)
        valid = ", ".join(f"builtin:{b}" for b in BUILTIN_SOURCES)
        raise DataError(f"unknown built-in speech source {source!r}; valid: {valid}")
    return WavFolderDataset(source, segment_length, sample_rate, seed=seed, short_clips=short_clips)
