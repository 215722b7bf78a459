"""The speech modality's part of ``mmgan report``: for each sample step, up to four clips, the real one
beside the generated one, each with an audio player and its log-mel.

The run writes a step's generated clips as one WAV (joined with short gaps, ``samples.py``); here they
are cut apart again. The real clips are not in the run: they are read again from its data source, as
the run read them for its sample files (``ReportContext.real_samples``), written once and shown at every
step. Every log-mel is drawn on the real clips' colour scale, so real and generated compare by colour.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from mmgan.report.section import ReportContext, ReportGroup, ReportItem, ReportSection

if TYPE_CHECKING:
    import torch

    from mmgan_speech.mel import MelConfig

CLIPS = 4  # what samples.py writes at most, and what a reader can compare at a glance
SCALE = 3  # pixels per mel bin (and at least per frame: short clips are stretched to MIN_WIDTH)
MIN_WIDTH = 240


def speech_report_section(ctx: ReportContext) -> ReportSection | None:
    from mmgan_speech.samples import GAP_SECONDS, MEL

    wavs, pictures = ctx.sample_files(".wav"), ctx.sample_files(".png")
    if not wavs and not pictures:
        return None
    expected = min(CLIPS, int(ctx.settings.get("train", {}).get("num_samples", CLIPS) or CLIPS))
    real = ctx.real_samples(expected)
    real_items, scale = write_real_clips(ctx, real, MEL) if real is not None else ([], None)
    gap = int(GAP_SECONDS * MEL.sample_rate)
    groups = []
    for step in sorted(set(wavs) | set(pictures)):
        items: list[ReportItem] = []
        if step in wavs:
            clips = split_clips(read_clips(wavs[step], MEL), gap, len(real_items) or expected)
            for i, clip in enumerate(clips):
                if i < len(real_items):
                    items.append(real_items[i])
                name = f"step_{step:06d}_clip{i + 1}"
                items.append(ReportItem(f"clip {i + 1}, generated at step {step}",
                                        write_mel_picture(ctx, name, clip, MEL, scale),
                                        write_clip(ctx, name, clip, MEL)))
        else:  # the clips are gone; the run's own picture of the mels still shows the step
            items.append(ReportItem(f"step {step}: real (left) and generated (right) log-mels", pictures[step]))
        groups.append(ReportGroup(f"step {step}", items, step, columns=2 if real_items and step in wavs else 1))
    text = (f"Up to {CLIPS} clips per sample step: the real clip (left) and what the vocoder made of its mel "
            "(right), with their log-mels (low frequencies at the bottom, one colour scale).")
    if real is None:
        text += (f" The real clips could not be read again from {getattr(ctx.config, 'data', 'the data source')}"
                 " here: only the generated clips are shown.")
    highlights = []
    best = ctx.best_step
    if best is not None and best in wavs:
        highlights = [ReportGroup(f"best (step {best})", g.items, best, g.columns) for g in groups if g.step == best]
    return ReportSection("speech: clips", groups=groups, highlights=highlights, layout="stack", text=text)


def read_clips(path: Path, mel: MelConfig) -> np.ndarray:
    from mmgan_speech.audio import read_wav

    return read_wav(path, mel.sample_rate)


def split_clips(joined: np.ndarray, gap: int, count: int) -> list[np.ndarray]:
    """The clips of a WAV that holds them one after the other with ``gap`` samples of silence between:
    ``count`` clips when the length allows it, else the largest count that divides it (at least one)."""
    for k in [count, *range(CLIPS, 0, -1)]:
        if k >= 1 and (len(joined) - (k - 1) * gap) % k == 0 and len(joined) > (k - 1) * gap:
            length = (len(joined) - (k - 1) * gap) // k
            return [joined[i * (length + gap): i * (length + gap) + length] for i in range(k)]
    return [joined]


def write_real_clips(ctx: ReportContext, real: torch.Tensor, mel: MelConfig
                     ) -> tuple[list[ReportItem], tuple[float, float]]:
    """The real clips as WAVs and log-mel pictures (once per report), and the colour scale they set."""
    from mmgan_speech.mel import mel_spectrogram

    waves = [clip.reshape(-1).float() for clip in real[:CLIPS]]
    mels = [mel_spectrogram(w, mel) for w in waves]
    scale = (min(float(m.min()) for m in mels), max(float(m.max()) for m in mels))
    items = []
    for i, (wave, m) in enumerate(zip(waves, mels, strict=True)):
        name = f"real_clip{i + 1}"
        items.append(ReportItem(f"clip {i + 1}, real", save_mel(ctx.file(f"{name}.png"), m, scale),
                                write_clip(ctx, name, wave.numpy(), mel)))
    return items, scale


def write_clip(ctx: ReportContext, name: str, wave: np.ndarray, mel: MelConfig) -> Path:
    from mmgan_speech.audio import write_wav

    path = ctx.file(f"{name}.wav")
    write_wav(path, np.asarray(wave, dtype=np.float32), mel.sample_rate)
    return path


def write_mel_picture(ctx: ReportContext, name: str, wave: np.ndarray, mel: MelConfig,
                      scale: tuple[float, float] | None) -> Path:
    import torch

    from mmgan_speech.mel import mel_spectrogram

    m = mel_spectrogram(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), mel)
    return save_mel(ctx.file(f"{name}.png"), m, scale or (float(m.min()), float(m.max())))


def save_mel(path: Path, m: torch.Tensor, scale: tuple[float, float]) -> Path:
    """A log-mel (n_mels, frames) as a PNG, low frequencies at the bottom, coloured on ``scale``."""
    from mmgan_speech.samples import colorize

    values = np.nan_to_num(m.flip(0).numpy(), nan=scale[0], posinf=scale[1], neginf=scale[0])
    picture = Image.fromarray(colorize(values, *scale))
    width = max(picture.width * SCALE, MIN_WIDTH)
    picture.resize((width, picture.height * SCALE), Image.Resampling.NEAREST).save(path, format="PNG")
    return path
