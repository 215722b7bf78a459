"""``mmgan vocode``: a wav (copy synthesis) or a TTS mel (.npy, (80, frames)) to a waveform, in chunks.

Memory stays bounded for inputs of any length: the mel is computed chunk by chunk, and the generator
runs on chunks of frames with ``overlap`` frames of context on each side, cut away afterwards. The
generator is convolutional with a receptive field far below the default overlap, so the chunked
output equals the unchunked one to float precision (tested).
"""

from __future__ import annotations

from collections.abc import Iterator
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
            mel = np.load(path, allow_pickle=False, mmap_mode="r")  # read chunk by chunk as vocoding goes
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{path}: not a readable .npy array ({exc or 'empty file'})") from None
        if mel.ndim != 2 or mel.shape[0] != MEL.n_mels or not np.issubdtype(mel.dtype, np.floating):
            raise DataError(f"{path}: expected a float array of shape ({MEL.n_mels}, frames), "
                            f"got {mel.dtype} {mel.shape}")
        if mel.shape[1] < 1:
            raise DataError(f"{path}: the mel has no frames (shape {mel.shape})")
        check_mel_values(path, float(mel.min()), float(mel.max()))
        return MappedMel(mel)
    wave = torch.from_numpy(read_wav(path, MEL.sample_rate))
    if wave.shape[-1] <= MEL.padding + MEL.hop_length:
        raise DataError(f"{path}: too short to vocode ({wave.shape[-1]} samples at {MEL.sample_rate} Hz)")
    return mel_spectrogram_long(wave, MEL)


# Natural-log mel magnitudes: silence is log(1e-5) = -11.5, full-scale speech stays below about 5. The
# bound is far outside that, only to refuse values the generator turns into NaN (1e30 did) or noise.
MEL_VALUE_LIMIT = 100.0


def check_mel_values(path: Path, low: float, high: float) -> None:
    """A one-line error naming the file and its value range unless every value is finite and within the limit."""
    if not (np.isfinite(low) and np.isfinite(high)):
        raise DataError(f"{path}: the mel holds NaN or infinite values")
    if low < -MEL_VALUE_LIMIT or high > MEL_VALUE_LIMIT:
        raise DataError(f"{path}: log-mel values must lie in [-{MEL_VALUE_LIMIT:g}, {MEL_VALUE_LIMIT:g}] (natural "
                        f"log of mel magnitudes: silence is -11.5, speech below about 5), got {low:.3g} to "
                        f"{high:.3g}; is it in another scale?")


class MappedMel:
    """A memory-mapped (80, frames) .npy mel that hands out float32 tensors one slice at a time."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.shape = array.shape

    def __getitem__(self, index: tuple) -> torch.Tensor:
        return torch.tensor(np.asarray(self.array[index], dtype=np.float32))  # a copy: the map is read-only


@torch.inference_mode()
def vocode_chunks(generator: torch.nn.Module, mel: torch.Tensor | MappedMel, chunk_frames: int = 1024,
                  overlap: int = 64, progress: bool = False, modality: str = "speech") -> Iterator[torch.Tensor]:
    """Waveform pieces for a log-mel (80, frames), ``chunk_frames * hop`` samples each (the last shorter)."""
    if chunk_frames < 1 or overlap < 0:
        raise ValueError(f"chunk_frames must be >= 1 and overlap >= 0, got {chunk_frames}, {overlap}")
    frames, hop = mel.shape[-1], MEL.hop_length
    starts = range(0, frames, chunk_frames)
    for start in tqdm(starts, desc="vocode", unit="chunk", disable=not progress or len(starts) < 2):
        stop = min(frames, start + chunk_frames)
        lo, hi = max(0, start - overlap), min(frames, stop + overlap)
        wave = generator(modality, mel[:, lo:hi][None]).reshape(-1)
        yield wave[(start - lo) * hop: (stop - lo) * hop].float()


def vocode(generator: torch.nn.Module, mel: torch.Tensor | MappedMel, chunk_frames: int = 1024, overlap: int = 64,
           progress: bool = False, modality: str = "speech") -> torch.Tensor:
    """Waveform (frames * hop,) for a log-mel (80, frames), generated ``chunk_frames`` at a time."""
    return torch.cat(list(vocode_chunks(generator, mel, chunk_frames, overlap, progress, modality)))
