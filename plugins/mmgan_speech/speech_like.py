"""The built-in procedural speech-like set (``builtin:speech``): voiced stretches with pitch and moving
formants, fricatives, bursts and silences, rendered deterministically from a seed."""

from __future__ import annotations

import math

import numpy as np
import scipy.signal
import torch

from mmgan.data.loading import check_int

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
