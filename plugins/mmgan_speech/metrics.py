"""Vocoder quality measures that need no download, per clip pair and averaged over held-out clips.

Every function compares one generated clip with its reference clip (copy synthesis: reference -> log-mel ->
vocoder -> generated), so the two are frame-aligned and no time warping is done. All are distances (0 for
identical clips) except PESQ and STOI, which are similarities (higher is better).

- ``mel_l1``: mean absolute difference of the log-mels (the one mel definition, ``mel.py``; natural log).
- ``mrstft``: multi-resolution STFT distance of Parallel WaveGAN (Yamamoto et al. 2020), the speech plugin's
  ``losses.multi_resolution_stft``: spectral convergence ``||R - F||_F / ||R||_F`` plus the mean absolute
  difference of log magnitudes, averaged over (n_fft, hop, window) = (1024, 120, 600), (2048, 240, 1200),
  (512, 50, 240), Hann windows.
- ``mcd_db``: mel-cepstral distortion in dB, ``(10 / ln 10) * sqrt(2 * sum_{m=1..24} (c_m - c'_m)^2)`` averaged
  over the reference's non-silent frames. ``c_m`` is the real cepstrum of the log-mel frame:
  ``c_m = (1 / N) * sum_k logmel_k * cos(pi * m * (k + 1/2) / N)`` over the N = 80 mel bins (a DCT-II scaled
  so that ``logmel_k ~ c_0 + 2 * sum_m c_m cos(...)``, the convention the MCD formula assumes); c_0 (the frame's
  level) is dropped. A frame is silent when its reference mel energy is more than 40 dB below the clip's
  loudest frame (``SILENCE_DB``). These are filterbank cepstra, not SPTK's all-pass-warped mel-cepstra, so
  values are comparable between runs of mmgan, and only roughly with MCDs published elsewhere.
- ``pesq_wb``: wide-band PESQ (ITU-T P.862.2, the ``pesq`` package), both clips resampled to 16 kHz with
  ``scipy.signal.resample_poly``; from about 1.04 to 4.64 (a clip against itself).
- ``stoi``: short-time objective intelligibility (Taal et al. 2011, the ``pystoi`` package) at the clips'
  own rate; 0 to 1.

:func:`evaluate_vocoder` runs a vocoder on held-out clips (:func:`held_out_clips`) and averages these over
clips; it is what ``mmgan eval`` and periodic evaluation during training report for ``speech``.

PESQ and STOI need the optional ``audio-metrics`` extra; without it they are left out and
:func:`missing_optional_message` says how to install it. Clips of different lengths are trimmed to the shorter
(a MelGAN output has ``frames * hop`` samples, so up to ``hop - 1`` fewer than the reference). Clips at
different sample rates are refused (:class:`~mmgan.errors.DataError`, one line naming both rates).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import scipy.signal
import torch
import webdataset as wds

from mmgan.data.shards import is_shard_source, open_shards
from mmgan.errors import DataError, MetricError
from mmgan_speech.audio import is_silent, peak_normalize, read_wav, read_wav_bytes
from mmgan_speech.datasets import PEAK, SpeechLikeDataset, find_wav_files
from mmgan_speech.losses import STFT_RESOLUTIONS, multi_resolution_stft
from mmgan_speech.mel import MelConfig, mel_spectrogram

__all__ = [
    "MCD_COEFFICIENTS",
    "PESQ_RATE",
    "SILENCE_DB",
    "check_sample_rates",
    "evaluate_vocoder",
    "held_out_clips",
    "mel_cepstral_distortion",
    "mel_l1",
    "missing_optional_message",
    "mrstft",
    "pesq_wb",
    "speech_metrics",
    "stoi",
]

MEL = MelConfig()
MCD_COEFFICIENTS = 24  # c_1 .. c_24, the usual order-24 mel-cepstrum of TTS evaluations, c_0 dropped
SILENCE_DB = 40.0  # frames whose reference mel energy is this far below the clip's loudest frame are skipped
PESQ_RATE = 16_000  # wide-band PESQ is defined at 16 kHz
_MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)

HELD_OUT_SECONDS = 4.0  # length of each built-in held-out clip
MAX_CLIP_SECONDS = 30.0  # longer WAV files are cut here, so one long file cannot dominate time and memory
Wave = np.ndarray | torch.Tensor

log = logging.getLogger("mmgan")


def check_sample_rates(generated_rate: int, reference_rate: int, expected: int | None = None) -> None:
    """Raise a one-line DataError when the two clips' rates differ, or differ from ``expected`` (the mel's)."""
    if generated_rate != reference_rate:
        raise DataError(f"sample rates differ: generated audio is {generated_rate} Hz, reference audio is "
                        f"{reference_rate} Hz; resample one to the other before comparing")
    if expected is not None and generated_rate != expected:
        raise DataError(f"audio is {generated_rate} Hz but the speech mel is defined at {expected} Hz; "
                        f"resample it to {expected} Hz")


def _pair(generated: Wave, reference: Wave) -> tuple[torch.Tensor, torch.Tensor]:
    """Both clips as float32 CPU tensors (T,), trimmed to the shorter."""
    waves = []
    for name, wave in (("generated", generated), ("reference", reference)):
        tensor = wave.detach() if isinstance(wave, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(wave))
        tensor = tensor.to("cpu", torch.float32)
        if tensor.dim() > 1 and all(size == 1 for size in tensor.shape[:-1]):
            tensor = tensor.reshape(-1)  # (1, T) and (1, 1, T) are one clip
        if tensor.dim() != 1:
            raise ValueError(f"speech metrics compare one clip at a time: {name} has shape {tuple(tensor.shape)}")
        waves.append(tensor)
    length = min(w.shape[0] for w in waves)
    return waves[0][:length], waves[1][:length]


def mel_l1(generated: Wave, reference: Wave, mel: MelConfig = MEL) -> float:
    """Mean absolute difference of the two clips' log-mels (natural log), after trimming to the shorter."""
    fake, real = _pair(generated, reference)
    return float((mel_spectrogram(fake, mel) - mel_spectrogram(real, mel)).abs().mean())


def mrstft(generated: Wave, reference: Wave) -> float:
    """Multi-resolution STFT distance (spectral convergence + log-magnitude L1, mean of 3 resolutions)."""
    fake, real = _pair(generated, reference)
    shortest = max(n_fft for n_fft, _, _ in STFT_RESOLUTIONS) // 2
    if real.shape[0] <= shortest:
        raise ValueError(f"the multi-resolution STFT needs clips of more than {shortest} samples, got {real.shape[0]}")
    return float(multi_resolution_stft(fake[None], real[None]))


@functools.cache
def _cepstrum_basis(n_mels: int, n_coefficients: int) -> torch.Tensor:
    # rows m = 1..n_coefficients of the DCT-II, scaled 1/N: the real-cepstrum convention of the MCD formula
    m = torch.arange(1, n_coefficients + 1, dtype=torch.float64)[:, None]
    k = torch.arange(n_mels, dtype=torch.float64)[None, :]
    return (torch.cos(math.pi * m * (k + 0.5) / n_mels) / n_mels).float()


def mel_cepstral_distortion(generated: Wave, reference: Wave, mel: MelConfig = MEL,
                            n_coefficients: int = MCD_COEFFICIENTS, silence_db: float = SILENCE_DB) -> float:
    """Mel-cepstral distortion in dB over the reference's non-silent frames, c_0 excluded (module docstring)."""
    if not 1 <= n_coefficients < mel.n_mels:
        raise ValueError(f"n_coefficients must be in 1..{mel.n_mels - 1}, got {n_coefficients}")
    fake, real = _pair(generated, reference)
    log_fake, log_real = mel_spectrogram(fake, mel), mel_spectrogram(real, mel)  # (n_mels, frames)
    basis = _cepstrum_basis(mel.n_mels, n_coefficients)
    diff = basis @ (log_fake - log_real)  # (n_coefficients, frames)
    frame_mcd = _MCD_SCALE * diff.square().sum(0).sqrt()
    # frame energy in dB of the reference: 10 log10 of the summed mel power (magnitude squared)
    energy_db = 10.0 / math.log(10.0) * torch.logsumexp(2.0 * log_real, dim=0)
    voiced = energy_db >= energy_db.max() - silence_db
    return float(frame_mcd[voiced].mean())


def missing_optional_message() -> str | None:
    """One line naming the optional metric packages that are not installed, or None when all are."""
    missing = [name for name in ("pesq", "pystoi") if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return (f"PESQ and STOI skipped: {' and '.join(missing)} not installed "
            f"(pip install 'mmgan[audio-metrics]')")


def _to_16k(wave: torch.Tensor, sample_rate: int) -> np.ndarray:
    samples = wave.double().numpy()
    if sample_rate == PESQ_RATE:
        return samples
    common = math.gcd(PESQ_RATE, sample_rate)
    return scipy.signal.resample_poly(samples, PESQ_RATE // common, sample_rate // common)


def pesq_wb(generated: Wave, reference: Wave, sample_rate: int) -> float:
    """Wide-band PESQ (MOS-LQO, about 1.04 to 4.64) after resampling both clips to 16 kHz.

    Needs the ``pesq`` package (``pip install 'mmgan[audio-metrics]'``); NaN when PESQ finds no speech in the
    reference (a silent clip), so that averaging over clips can leave it out.
    """
    from pesq import PesqError, pesq

    fake, real = _pair(generated, reference)
    try:
        return float(pesq(PESQ_RATE, _to_16k(real, sample_rate), _to_16k(fake, sample_rate), "wb",
                          on_error=PesqError.RAISE_EXCEPTION))
    except PesqError:  # NoUtterancesError and friends: nothing PESQ can score
        return float("nan")


def stoi(generated: Wave, reference: Wave, sample_rate: int) -> float:
    """Short-time objective intelligibility (0 to 1) at the clips' rate. Needs the ``pystoi`` package.

    NaN when the reference holds too little speech for STOI's 384 ms analysis segments (averages leave it out).
    """
    from pystoi import stoi as pystoi_stoi

    fake, real = _pair(generated, reference)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score = float(pystoi_stoi(real.double().numpy(), fake.double().numpy(), sample_rate, extended=False))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        return float("nan")  # under ~0.4 s of speech pystoi returns a meaningless 1e-5
    return score


def speech_metrics(generated: Wave, reference: Wave, generated_rate: int, reference_rate: int,
                   mel: MelConfig = MEL) -> dict[str, float]:
    """Every speech metric of one clip pair: ``mel_l1``, ``mrstft``, ``mcd_db``, and ``pesq_wb`` and ``stoi``
    when the ``audio-metrics`` extra is installed (see :func:`missing_optional_message`).

    The rates must agree with each other and with the mel's (22050 Hz): a one-line DataError otherwise.
    """
    check_sample_rates(generated_rate, reference_rate, mel.sample_rate)
    scores = {
        "mel_l1": mel_l1(generated, reference, mel),
        "mrstft": mrstft(generated, reference),
        "mcd_db": mel_cepstral_distortion(generated, reference, mel),
    }
    if importlib.util.find_spec("pesq") is not None:
        scores["pesq_wb"] = pesq_wb(generated, reference, reference_rate)
    if importlib.util.find_spec("pystoi") is not None:
        scores["stoi"] = stoi(generated, reference, reference_rate)
    return scores


# --- a vocoder on held-out clips ---------------------------------------------------------------------------


def held_out_clips(source: str, num_clips: int, seed: int = 0, seconds: float = HELD_OUT_SECONDS,
                   sample_rate: int = MEL.sample_rate) -> Iterator[torch.Tensor]:
    """Up to ``num_clips`` whole reference clips (T,) at ``sample_rate``, float32, peak 0.95 (as in training).

    ``builtin:speech``: ``SpeechLikeDataset(seed=seed).clip(i, seconds)`` for i = 0, 1, ...: rendered from a
    random stream disjoint from every training item of any seed, so never seen in training. A folder, an
    LJSpeech root or a .wav file: whole files in an order shuffled by ``seed``, each cut at
    ``MAX_CLIP_SECONDS``; unreadable, silent and too-short files (under 0.1 s) are skipped.
    """
    if source.startswith("builtin:"):
        if source != "builtin:speech":
            raise DataError(f"unknown built-in speech source {source!r}; valid: builtin:speech")
        data = SpeechLikeDataset(seed=seed, sample_rate=sample_rate)
        for i in range(num_clips):
            yield data.clip(i, seconds).reshape(-1)
        return
    if is_shard_source(source):
        waves = _shard_clips(source, sample_rate)
    else:
        files = find_wav_files(source)
        order = np.random.default_rng(seed).permutation(len(files))
        waves = (functools.partial(read_wav, files[index], sample_rate) for index in order)
    given = 0
    for load in waves:
        if given == num_clips:
            return
        try:
            wave = load()[: int(MAX_CLIP_SECONDS * sample_rate)]
        except DataError as exc:
            log.warning("speech eval: skipped %s", exc)
            continue
        if wave.size < sample_rate // 10 or is_silent(wave):
            continue
        given += 1
        yield torch.from_numpy(peak_normalize(wave, PEAK))


def _shard_clips(source: str, sample_rate: int) -> Iterator[Callable[[], np.ndarray]]:
    """Loaders of the whole clips in WebDataset shards (``mmgan data pack`` output), in shard order."""
    shards = open_shards(source)
    for url in shards.urls:
        for sample in wds.tariterators.tarfile_samples([{"url": url}]):
            if "wav" in sample:
                yield functools.partial(read_wav_bytes, sample["wav"], f"{url}:{sample['__key__']}.wav", sample_rate)


@functools.cache
def _warn_missing_optional() -> None:
    # once per process: periodic evaluation during training would repeat it every time
    if (message := missing_optional_message()) is not None:
        log.warning("speech eval: %s", message)


def evaluate_vocoder(vocoder: Callable[[torch.Tensor], torch.Tensor], source: str, num_clips: int,
                     seed: int = 0, mel: MelConfig = MEL, seconds: float = HELD_OUT_SECONDS) -> dict[str, float]:
    """Copy synthesis of held-out clips: clip -> log-mel -> ``vocoder`` -> waveform, every metric, mean over clips.

    ``vocoder`` maps a log-mel (n_mels, frames) to a waveform (frames * hop,). A NaN (PESQ finding no speech,
    STOI a clip too short) is left out of that metric's mean; NaN if every clip gave one. Raises MetricError
    when the source gives no usable clip.
    """
    _warn_missing_optional()
    totals: dict[str, list[float]] = {}
    for clip in held_out_clips(source, num_clips, seed, seconds, mel.sample_rate):
        clip = clip[: clip.shape[0] // mel.hop_length * mel.hop_length]
        with torch.inference_mode():
            wave = vocoder(mel_spectrogram(clip, mel))
        for name, value in speech_metrics(wave, clip, mel.sample_rate, mel.sample_rate, mel).items():
            totals.setdefault(name, []).append(value)
    if not totals:
        raise MetricError(f"speech eval: {source} gave no usable clip (all unreadable, silent or under 0.1 s)")
    means = {}
    for name, values in totals.items():
        finite = [v for v in values if not math.isnan(v)]
        means[name] = float(np.mean(finite)) if finite else float("nan")
    return means

