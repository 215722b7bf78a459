"""Speech samples: generated clips as one WAV, and real vs generated log-mels side by side as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmgan.files import atomic_path
from mmgan_speech.audio import write_wav
from mmgan_speech.mel import MelConfig, mel_spectrogram

# anchor colours of a dark-to-bright map (black, purple, red, orange, pale yellow)
_ANCHORS = np.array([[0, 0, 4], [80, 18, 123], [183, 55, 121], [252, 137, 97], [252, 253, 191]], dtype=np.float64)
GAP_SECONDS = 0.25
MEL = MelConfig()


def colorize(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map values to RGB uint8 through the anchor colours (no matplotlib needed)."""
    t = np.clip((values - low) / max(high - low, 1e-9), 0, 1) * (len(_ANCHORS) - 1)
    i = np.minimum(t.astype(int), len(_ANCHORS) - 2)
    frac = (t - i)[..., None]
    return ((1 - frac) * _ANCHORS[i] + frac * _ANCHORS[i + 1]).round().astype(np.uint8)


def mel_image(rows: list[list[torch.Tensor]], scale: int = 3) -> Image.Image:
    """Log-mels (n_mels, frames) laid out in rows (real beside generated), low frequencies at the bottom."""
    flat = [m for row in rows for m in row]
    low, high = min(float(m.min()) for m in flat), max(float(m.max()) for m in flat)
    n_mels, width = flat[0].shape[0], max(m.shape[-1] for m in flat)
    sep = np.full((n_mels, 2, 3), 255, np.uint8)
    lines = []
    for row in rows:
        cells = []
        for m in row:
            cell = np.full((n_mels, width), low)
            cell[:, : m.shape[-1]] = m.flip(0).numpy()
            cells += [colorize(cell, low, high), sep]
        lines += [np.concatenate(cells[:-1], axis=1), None]
    total = max(line.shape[1] for line in lines if line is not None)
    blocks = [line if line is not None else np.full((2, total, 3), 255, np.uint8) for line in lines[:-1]]
    picture = Image.fromarray(np.concatenate(blocks))
    return picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)


def write_speech_samples(samples: torch.Tensor, path: Path, real: torch.Tensor | None, count: int = 4,
                         config: MelConfig = MEL) -> list[Path]:
    """``<path>.wav``: the first ``count`` clips with short gaps; ``<path>.png``: each clip's real log-mel
    (left) beside the generated one (right), one clip per row."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix.lower() in (".wav", ".png") else path
    clips = samples[:count].reshape(min(count, len(samples)), -1).float()
    gap = torch.zeros(int(GAP_SECONDS * config.sample_rate))
    joined = torch.cat([part for clip in clips for part in (clip, gap)][:-1])
    wav = stem.with_suffix(".wav")
    write_wav(wav, joined.numpy(), config.sample_rate)
    rows = []
    for i, clip in enumerate(clips):
        row = [mel_spectrogram(real[i].reshape(-1).float(), config)] if real is not None and i < len(real) else []
        rows.append([*row, mel_spectrogram(clip, config)])
    png = stem.with_suffix(".png")
    with atomic_path(png) as tmp:
        mel_image(rows).save(tmp, format="PNG")
    return [wav, png]
