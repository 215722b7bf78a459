"""``mmgan vocode``: a wav (copy synthesis) or a TTS mel (.npy, (80, frames)) to a waveform, in chunks.

Memory stays bounded for inputs of any length: the mel is computed chunk by chunk, and the generator
runs on chunks of frames with ``overlap`` frames of context on each side, cut away afterwards. The
generator is convolutional with a receptive field far below the default overlap, so the chunked
output equals the unchunked one to float precision (tested).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mmgan.errors import DataError
from mmgan_speech.audio import read_wav
from mmgan_speech.mel import MelConfig, mel_spectrogram_long

MEL = MelConfig()


def read_mel_input(path: Path) -> torch.Tensor:
    """The log-mel (80, frames) of a .wav file, or the array in a .npy file, checked."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            mel = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{path}: not a readable .npy array ({exc or 'empty file'})") from None
        if mel.ndim != 2 or mel.shape[0] != MEL.n_mels or not np.issubdtype(mel.dtype, np.floating):
            raise DataError(f"{path}: expected a float array of shape ({MEL.n_mels}, frames), "
                            f"got {mel.dtype} {mel.shape}")
        if mel.shape[1] < 1 or not np.isfinite(mel).all():
            raise DataError(f"{path}: the mel must have at least one frame and only finite values")
        return torch.from_numpy(mel.astype(np.float32))
    wave = torch.from_numpy(read_wav(path, MEL.sample_rate))
    if wave.shape[-1] <= MEL.padding + MEL.hop_length:
        raise DataError(f"{path}: too short to vocode ({wave.shape[-1]} samples at {MEL.sample_rate} Hz)")
    return mel_spectrogram_long(wave, MEL)


@torch.inference_mode()
def vocode(generator: torch.nn.Module, mel: torch.Tensor, chunk_frames: int = 1024, overlap: int = 64,
           progress: bool = False, modality: str = "speech") -> torch.Tensor:
    """Waveform (frames * hop,) for a log-mel (80, frames), generated ``chunk_frames`` at a time."""
    if chunk_frames < 1 or overlap < 0:
        raise ValueError(f"chunk_frames must be >= 1 and overlap >= 0, got {chunk_frames}, {overlap}")
    frames, hop = mel.shape[-1], MEL.hop_length
    out = torch.empty(frames * hop)
    starts = range(0, frames, chunk_frames)
    for start in tqdm(starts, desc="vocode", unit="chunk", disable=not progress or len(starts) < 2):
        stop = min(frames, start + chunk_frames)
        lo, hi = max(0, start - overlap), min(frames, stop + overlap)
        wave = generator(modality, mel[None, :, lo:hi]).reshape(-1)
        out[start * hop: stop * hop] = wave[(start - lo) * hop: (stop - lo) * hop].float()
    return out
