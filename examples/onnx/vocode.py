"""Vocode a WAV file with a vocoder exported by `mmgan export RUN --format onnx -o vocoder.onnx`, with numpy and
onnxruntime alone (no torch, no mmgan): the log-mel front end below computes the mel the vocoder was trained on,
from the definition the ONNX file carries in its metadata.

    python examples/onnx/vocode.py vocoder.onnx in.wav out.wav

in.wav: 16-bit PCM, mono or stereo (averaged), at the vocoder's sample rate (`sample_rate` in the metadata; this
script does not resample). out.wav: 16-bit PCM mono at that rate.
"""

from __future__ import annotations

import json
import sys
import wave

import numpy as np
import onnxruntime


def slaney_mel(hz: np.ndarray) -> np.ndarray:
    """Hz to mels on Slaney's scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    logarithmic = 15.0 + np.log(np.maximum(hz, 1000.0) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, logarithmic, hz * 3.0 / 200.0)


def slaney_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (mel - 15.0)), mel * 200.0 / 3.0)


def mel_filterbank(mel: dict) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangles on the Slaney scale, each of unit area (Slaney normalisation)."""
    bins = np.linspace(0.0, mel["sample_rate"] / 2, mel["n_fft"] // 2 + 1)
    edges = slaney_hz(np.linspace(slaney_mel(mel["fmin"]), slaney_mel(mel["fmax"]), mel["n_mels"] + 2))
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    weights = np.maximum(0.0, np.minimum((bins - left) / (centre - left), (right - bins) / (right - centre)))
    return (weights * 2.0 / (right - left)).astype(np.float32)


def log_mel(samples: np.ndarray, mel: dict) -> np.ndarray:
    """(n_mels, len // hop) log-mel of float samples in [-1, 1]: reflect padding of (n_fft - hop) / 2 on each
    side, frames every hop under a periodic Hann window of win_length (centred in n_fft), STFT magnitudes,
    the filterbank, then the natural log clamped at log_clamp."""
    n_fft, hop, win = mel["n_fft"], mel["hop_length"], mel["win_length"]
    pad = (n_fft - hop) // 2
    padded = np.pad(samples.astype(np.float32), (pad, pad), mode="reflect")
    count = 1 + (len(padded) - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:count]
    window = np.zeros(n_fft, dtype=np.float32)
    start = (n_fft - win) // 2
    window[start:start + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic Hann
    spectrum = np.fft.rfft(frames * window, axis=1)
    magnitude = np.sqrt(spectrum.real ** 2 + spectrum.imag ** 2 + mel["magnitude_eps"]).astype(np.float32)
    return np.log(np.maximum(mel_filterbank(mel) @ magnitude.T, mel["log_clamp"]))


def read_wav(path: str) -> tuple[np.ndarray, int]:
    with wave.open(path, "rb") as f:
        if f.getsampwidth() != 2:
            raise SystemExit(f"{path}: this script reads 16-bit PCM WAV files only")
        data = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").reshape(-1, f.getnchannels())
        return data.mean(axis=1) / 32768.0, f.getframerate()


def write_wav(path: str, samples: np.ndarray, rate: int) -> None:
    with wave.open(path, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes())


def vocode(model: str, source: str, target: str) -> None:
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    facts = session.get_modelmeta().custom_metadata_map
    mel, rate = json.loads(facts["mel"]), json.loads(facts["sample_rate"])
    samples, file_rate = read_wav(source)
    if file_rate != rate:
        raise SystemExit(f"{source} is at {file_rate} Hz; the vocoder takes {rate} Hz: resample it first")
    features = log_mel(samples, mel)[None]                        # (1, n_mels, frames)
    out = session.run(None, {"input": features.astype(np.float32)})[0]
    write_wav(target, out.reshape(-1), rate)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    vocode(*sys.argv[1:])
