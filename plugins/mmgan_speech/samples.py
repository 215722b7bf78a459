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


def mel_image(rows: list[torch.Tensor], scale: int = 2) -> Image.Image:
    """Log-mels (n_mels, frames) stacked top to bottom, low frequencies at the bottom of each."""
    low = min(float(r.min()) for r in rows)
    high = max(float(r.max()) for r in rows)
    width = max(r.shape[-1] for r in rows)
    blocks = []
    for r in rows:
        block = np.full((r.shape[0], width), low)
        block[:, : r.shape[-1]] = r.flip(0).numpy()
        blocks += [colorize(block, low, high), np.full((2, width, 3), 255, np.uint8)]
    picture = Image.fromarray(np.concatenate(blocks[:-1]))
    return picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)


def write_speech_samples(samples: torch.Tensor, path: Path, real: torch.Tensor | None, count: int = 4,
                         config: MelConfig = MEL) -> list[Path]:
    """``<path>.wav``: the first ``count`` clips with short gaps; ``<path>.png``: real over generated mels."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix.lower() in (".wav", ".png") else path
    clips = samples[:count].reshape(min(count, len(samples)), -1).float()
    gap = torch.zeros(int(GAP_SECONDS * config.sample_rate))
    joined = torch.cat([part for clip in clips for part in (clip, gap)][:-1])
    wav = stem.with_suffix(".wav")
    write_wav(wav, joined.numpy(), config.sample_rate)
    rows = []
    for i, clip in enumerate(clips):
        if real is not None and i < len(real):
            rows.append(mel_spectrogram(real[i].reshape(-1).float(), config))
        rows.append(mel_spectrogram(clip, config))
    png = stem.with_suffix(".png")
    with atomic_path(png) as tmp:
        mel_image(rows).save(tmp, format="PNG")
    return [wav, png]
