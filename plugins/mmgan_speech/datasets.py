"""Speech data sources: a built-in procedural speech-like set and folders of WAV files (LJSpeech too).

Every item is a float32 tensor of shape (1, segment_length) in [-1, 1] at ``sample_rate``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.signal
import torch

from mmgan.data import check_int
from mmgan.errors import DataError
from mmgan_speech.audio import is_silent, read_wav

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
PEAK = 0.95  # peak level of every item and clip, HiFi-GAN's ``normalize(audio) * 0.95``
_HOP = 256  # the mel hop: segments must be whole frames so frames * hop == samples




def _check_segment(segment_length: object) -> int:
    segment = check_int("segment_length", segment_length, _HOP)
    if segment % _HOP:
        raise ValueError(f"segment_length must be a multiple of the mel hop {_HOP}, got {segment}")
    return segment


# --- built-in speech-like audio --------------------------------------------------------------------------
#
# A tiny cascade formant synthesiser (after Klatt 1980): a harmonic voice source with a smooth, declining,
# vibrato- and jitter-laden pitch contour, filtered by 3-5 two-pole resonators whose frequencies glide
# between vowel targets; plus fricative noise (band-passed), plosive bursts after closures, and pauses.
# An utterance is a Markov chain of events; amplitudes are step functions smoothed forwards and backwards.

# (F1, F2, F3) in Hz of adult male vowels (Peterson & Barney 1952): i, I, e, ae, a, o, U, u, V, 3
_VOWELS = np.array([
    (270, 2290, 3010), (390, 1990, 2550), (530, 1840, 2480), (660, 1720, 2410), (730, 1090, 2440),
    (570, 840, 2410), (440, 1020, 2240), (300, 870, 2240), (640, 1190, 2390), (490, 1350, 1690),
], dtype=np.float64)
# consonant loci the formants glide towards during closures and fricatives: labial, alveolar, velar
_LOCI = np.array([(300, 900, 2300), (300, 1700, 2700), (300, 2200, 2400)], dtype=np.float64)
_BANDWIDTHS = np.array([80.0, 110.0, 160.0, 250.0, 300.0])

_SILENCE, _VOICED, _FRICATIVE, _BURST = 0, 1, 2, 3
# next-event probabilities by current event (silence, voiced, fricative, burst); a burst is always
# preceded by a short closure, added when the burst is drawn
_TRANSITIONS = np.array([
    (0.00, 0.55, 0.25, 0.20),
    (0.30, 0.20, 0.30, 0.20),
    (0.25, 0.60, 0.00, 0.15),
    (0.00, 0.85, 0.15, 0.00),
])
_DURATIONS_S = {_SILENCE: (0.04, 0.25), _VOICED: (0.06, 0.30), _FRICATIVE: (0.05, 0.16), _BURST: (0.005, 0.02)}
_BLOCK = 128  # formant frequencies are updated every block (5.8 ms at 22050 Hz)


def _smooth(x: np.ndarray, tau_samples: float) -> np.ndarray:
    """Zero-phase one-pole smoothing (forward then backward): steps become S-shaped ramps of about tau."""
    a = math.exp(-1.0 / max(tau_samples, 1.0))
    once = scipy.signal.lfilter([1.0 - a], [1.0, -a], x)
    return scipy.signal.lfilter([1.0 - a], [1.0, -a], once[::-1])[::-1]


def _slow_noise(rng: np.random.Generator, n: int, step: int) -> np.ndarray:
    """Unit-variance noise drawn every ``step`` samples and linearly interpolated: cheap band-limited drift."""
    points = rng.standard_normal(n // step + 2)
    return np.interp(np.arange(n) / step, np.arange(points.size), points)


class SpeechLikeDataset(torch.utils.data.Dataset):
    """Procedural speech-like audio, rendered on the fly; item ``i`` is a pure function of ``(seed, i)``.

    Each item is a ``segment_length``-sample window of a freshly drawn utterance: voiced stretches (a
    harmonic series on an f0 contour in 80-300 Hz with declination, vibrato and jitter, shaped by 3-5
    gliding formant resonances), fricatives (band-passed noise, sometimes voiced), plosive bursts after
    closures, and pauses, peak-normalised to 0.95. :meth:`clip` renders longer held-out utterances from a
    separate random stream, so they never coincide with a training item.
    """

    def __init__(self, segment_length: int = 8192, length: int = 20_000, seed: int = 0,
                 sample_rate: int = 22050) -> None:
        self.segment_length = _check_segment(segment_length)
        self.length = check_int("length", length, 1)
        self.seed = check_int("seed", seed, 0)
        self.sample_rate = check_int("sample_rate", sample_rate, 8000)
        nyquist = self.sample_rate / 2.0
        # fricative noise colourings, designed once: [s]-like, [sh]-like, [f]-like, [h]-like, plosive burst
        bands = [(4000, 8000), (2000, 5000), (1200, None), (500, 3500), (600, None)]
        self._noise_sos = []
        for low, high in bands:
            if high is None or high >= 0.95 * nyquist:
                sos = scipy.signal.butter(4, low, "highpass", fs=self.sample_rate, output="sos")
            else:
                sos = scipy.signal.butter(2, (low, high), "bandpass", fs=self.sample_rate, output="sos")
            self._noise_sos.append(sos)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> torch.Tensor:
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for SpeechLikeDataset of length {self.length}")
        rng = np.random.default_rng((self.seed, i))
        return torch.from_numpy(self._render(rng, self.segment_length))[None, :]

    def clip(self, index: int, seconds: float) -> torch.Tensor:
        """A held-out utterance of ``seconds`` seconds, shape (1, samples), a pure function of (seed, index).

        Drawn from a random stream disjoint from the training items', so it is fit for evaluation.
        """
        index = check_int("index", index, 0)
        if not seconds > 0:
            raise ValueError(f"clip seconds must be positive, got {seconds!r}")
        n = max(1, round(seconds * self.sample_rate))
        # a three-word key never collides with the two-word (seed, i) keys of the items
        rng = np.random.default_rng((self.seed, index, 0x5EEC4))
        return torch.from_numpy(self._render(rng, n))[None, :]

    # -- rendering -------------------------------------------------------------------------------------

    def _events(self, rng: np.random.Generator, n: int) -> list[tuple[int, int, int]]:
        """(kind, start, end) in samples; the chain starts before 0 so windows begin mid-event."""
        sr = self.sample_rate
        t = -int(rng.uniform(0.0, 0.15) * sr)
        kind = int(rng.choice(3, p=(0.2, 0.5, 0.3)))
        events: list[tuple[int, int, int]] = []
        while t < n:
            if kind == _BURST:  # the closure that makes a burst a plosive
                closure = int(rng.uniform(0.02, 0.07) * sr)
                events.append((_SILENCE, t, t + closure))
                t += closure
            low, high = _DURATIONS_S[kind]
            end = t + max(1, int(rng.uniform(low, high) * sr))
            events.append((kind, t, end))
            t = end
            kind = int(rng.choice(4, p=_TRANSITIONS[kind]))
        return events

    def _render(self, rng: np.random.Generator, n: int) -> np.ndarray:
        sr = self.sample_rate
        events = self._events(rng, n)

        # speaker: a higher voice has shorter vocal tract, so formants scale up with f0
        base_f0 = math.exp(rng.uniform(math.log(85.0), math.log(250.0)))
        tract = (base_f0 / 120.0) ** 0.25 * rng.uniform(0.95, 1.05)
        n_formants = int(rng.integers(3, 6))

        # amplitude steps per component, smoothed into envelopes below
        voiced = np.zeros(n)
        noise = np.zeros((len(self._noise_sos), n))
        centres, targets = [], []
        for kind, start, end in events:
            lo, hi = max(start, 0), min(end, n)
            centres.append(0.5 * (start + end))
            if kind == _VOICED:
                targets.append(_VOWELS[rng.integers(len(_VOWELS))] * rng.uniform(0.93, 1.07, 3))
                if hi > lo:
                    voiced[lo:hi] = rng.uniform(0.6, 1.0)
                continue
            targets.append(_LOCI[rng.integers(len(_LOCI))])
            if hi <= lo:
                continue
            if kind == _FRICATIVE:
                noise[rng.integers(4), lo:hi] = rng.uniform(0.15, 0.5)
                if rng.random() < 0.3:  # voiced fricative ([z], [v])
                    voiced[lo:hi] = rng.uniform(0.15, 0.35)
            elif kind == _BURST:
                noise[4, lo:hi] = rng.uniform(0.5, 1.0)
        voiced = _smooth(voiced, 0.006 * sr) * np.exp(0.1 * _slow_noise(rng, n, 256))

        # pitch: contour points every 100-250 ms, declination, then vibrato and jitter; all in log f0
        spacing = int(rng.uniform(0.1, 0.25) * sr)
        knots = np.arange(-spacing, n + 2 * spacing, spacing)
        log_f0 = np.interp(np.arange(n), knots, rng.normal(0.0, 0.12, knots.size))
        log_f0 = _smooth(log_f0, 0.03 * sr) - rng.uniform(0.0, 0.25) * np.arange(n) / sr
        vibrato_hz, vibrato_depth = rng.uniform(4.5, 6.5), rng.uniform(0.0, 0.015)
        log_f0 += vibrato_depth * np.sin(2 * np.pi * vibrato_hz * np.arange(n) / sr + rng.uniform(0, 2 * np.pi))
        log_f0 += rng.uniform(0.002, 0.01) * _slow_noise(rng, n, 32)
        f0 = np.clip(base_f0 * np.exp(log_f0), 80.0, 300.0)
        phase = 2 * np.pi * np.cumsum(f0) / sr + rng.uniform(0, 2 * np.pi)

        # harmonic series up to ~7 kHz by sin(k x) = 2 cos(x) sin((k-1) x) - sin((k-2) x): one multiply-add
        # per harmonic instead of a sine; float32 is accurate enough for the ~80 steps
        n_harmonics = max(1, min(80, int(min(7000.0, 0.45 * sr) / f0.max())))
        weights = np.arange(1, n_harmonics + 1) ** -rng.uniform(0.7, 1.3) * np.exp(rng.normal(0, 0.15, n_harmonics))
        two_cos = (2.0 * np.cos(phase)).astype(np.float32)
        prev, cur = np.zeros(n, np.float32), np.sin(phase).astype(np.float32)
        source = weights[0] * cur
        for k in range(1, n_harmonics):
            prev, cur = cur, two_cos * cur - prev
            source += np.float32(weights[k]) * cur
        source = source / np.sqrt(np.mean(source**2)) + rng.uniform(0.02, 0.1) * rng.standard_normal(n)

        # formant tracks: linear glides between event targets, sampled once per block
        blocks = -(-n // _BLOCK)
        block_centres = (np.arange(blocks) + 0.5) * _BLOCK
        order = np.argsort(centres)
        centres_sorted = np.asarray(centres)[order]
        targets_sorted = np.asarray(targets)[order] * tract
        freqs = np.empty((blocks, n_formants))
        for j in range(3):
            freqs[:, j] = np.interp(block_centres, centres_sorted, targets_sorted[:, j])
        for j in range(3, n_formants):  # F4, F5: speaker constants with a little drift
            freqs[:, j] = (3500.0 + 1000.0 * (j - 3)) * tract * (1 + 0.02 * rng.standard_normal())
        freqs = np.minimum(freqs, 0.45 * sr)
        bandwidths = _BANDWIDTHS[:n_formants] * rng.uniform(0.8, 1.3, n_formants)
        # Klatt resonators y = A x + B y[-1] + C y[-2] (unity gain at 0 Hz) in cascade, multiplied out into
        # one denominator per block: a single lfilter call per block is ~5x faster than sosfilt's overhead,
        # and order <= 10 with well-separated poles is well conditioned in float64
        radius = np.exp(-np.pi * bandwidths / sr)
        b_coef = 2.0 * radius * np.cos(2.0 * np.pi * freqs / sr)
        c_coef = -(radius**2)
        denominator = np.ones((blocks, 1))
        for j in range(n_formants):
            grown = np.zeros((blocks, denominator.shape[1] + 2))
            grown[:, :-2] += denominator
            grown[:, 1:-1] -= b_coef[:, j : j + 1] * denominator
            grown[:, 2:] -= c_coef[j] * denominator
            denominator = grown
        gain = np.prod(1.0 - b_coef - c_coef, axis=1)
        shaped = np.empty(n)
        # the filter state carries across blocks; with gliding coefficients this is the usual
        # block-wise time-varying filter, whose small switching transients are inaudible here
        state = np.zeros(2 * n_formants)
        for b in range(blocks):
            cut = slice(b * _BLOCK, (b + 1) * _BLOCK)
            shaped[cut], state = scipy.signal.lfilter([gain[b]], denominator[b], source[cut], zi=state)
        out = voiced * (shaped / np.sqrt(np.mean(shaped**2) + 1e-12))

        white = rng.standard_normal(n)
        for j in np.flatnonzero(noise.any(axis=1)):
            tau = 0.002 if j == 4 else 0.008  # bursts are abrupt; fricatives fade in and out
            coloured = scipy.signal.sosfilt(self._noise_sos[j], white)
            out += _smooth(noise[j], tau * sr) * coloured / np.sqrt(np.mean(coloured**2))

        # a recording's noise floor, 50-70 dB below the speech peak, so pauses are quiet but not zero
        peak = float(np.max(np.abs(out))) + 1e-12
        out += peak * 10 ** (rng.uniform(-70, -50) / 20) * rng.standard_normal(n)
        return (out * (PEAK / np.max(np.abs(out)))).astype(np.float32)


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
    end (``short_clips="pad"``) or skipped (``"skip"``). All are counted in ``skipped`` / ``padded`` and
    summarised in one warning.

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
        lengths, peaks = [], []
        for path in candidates:
            try:
                wave = read_wav(path, self.sample_rate)
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
            wave = read_wav(path, self.sample_rate)
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
