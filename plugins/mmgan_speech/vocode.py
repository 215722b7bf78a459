"""``mmgan vocode``: a wav (copy synthesis) or a TTS mel (.npy, (80, frames)) to a waveform, in chunks.

Memory stays bounded for inputs of any length: a .npy mel is read a slice at a time (:class:`NpyMel`), a
.wav a block at a time with its mel computed for the frames each chunk needs (:class:`WavMel`; equal to the
whole file's mel, tested), the output is written as it comes, and the generator runs on
chunks of frames with ``overlap`` frames of context on each side, cut away afterwards. The overlap is the
generator's receptive field (:func:`context_frames`): the frames on either side that one frame's samples
depend on, so the chunked output equals the unchunked one to float precision (tested) whatever the trunk.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mmgan.engine.precision import native_bf16
from mmgan.errors import DataError
from mmgan.trunk import GeneratorSet, TrunkBlock
from mmgan_speech.audio import WavBlocks
from mmgan_speech.mel import MelConfig, _cached_basis, _log_mel_of_padded
from mmgan_speech.networks import MelGANHead, MelStem, ReflectionPad1d, ResidualBlock
from mmgan_speech.vocos import InverseSTFT, ISTFTHead, VocosStem, phase_period, projection_reach

MEL = MelConfig()
PRECISIONS = ("fp32", "bf16", "auto")
# the overlap for a generator whose layers cannot be read (a plain function, as the plugin's evaluation
# passes): what every chunked call used before the receptive field was computed, far above the default
# generators' (7 frames for vocos, 9 for melgan at trunk depth 2)
DEFAULT_OVERLAP = 64


# the fewest mel frames every generator vocodes (one gives the vocos head's inverse STFT too few samples)
MIN_FRAMES = 2


def read_mel_input(path: Path) -> NpyMel | WavMel:
    """The log-mel (80, frames) of a .wav file, or the array in a .npy file, checked; read as vocoding goes."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            mel = np.load(path, allow_pickle=False, mmap_mode="r")  # the header checked, nothing read
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{path}: not a readable .npy array ({exc or 'empty file'})") from None
        if mel.ndim != 2 or mel.shape[0] != MEL.n_mels or not np.issubdtype(mel.dtype, np.floating):
            raise DataError(
                f"{path}: expected a float array of shape ({MEL.n_mels}, frames), got {mel.dtype} {mel.shape}"
            )
        if mel.shape[1] < 1:
            raise DataError(f"{path}: the mel has no frames (shape {mel.shape})")
        if mel.shape[1] < MIN_FRAMES:  # one frame: the vocos head's inverse STFT pads past its 256 samples
            raise DataError(f"{path}: the mel has {mel.shape[1]} frame; vocoding needs at least {MIN_FRAMES}")
        npy = NpyMel(path, mel)
        del mel
        lows, highs = [], []
        for lo in range(0, npy.shape[1], 4096):  # a block at a time, as vocoding reads it
            block = npy[:, lo : lo + 4096]
            lows.append(float(block.min()))
            highs.append(float(block.max()))
        check_mel_values(path, float(np.min(lows)), float(np.max(highs)))  # np.min and max keep a NaN
        return npy
    wave = WavBlocks(path, MEL.sample_rate)
    if wave.length <= MEL.padding + MEL.hop_length:
        raise DataError(f"{path}: too short to vocode ({wave.length} samples at {MEL.sample_rate} Hz)")
    return WavMel(wave)


# Natural-log mel magnitudes: silence is log(1e-5) = -11.5, full-scale speech stays below about 5. The
# bound is far outside that, only to refuse values the generator turns into NaN (1e30 did) or noise.
MEL_VALUE_LIMIT = 100.0


def check_mel_values(path: Path, low: float, high: float) -> None:
    """A one-line error naming the file and its value range unless every value is finite and within the limit."""
    if not (np.isfinite(low) and np.isfinite(high)):
        raise DataError(f"{path}: the mel holds NaN or infinite values")
    if low < -MEL_VALUE_LIMIT or high > MEL_VALUE_LIMIT:
        raise DataError(
            f"{path}: log-mel values must lie in [-{MEL_VALUE_LIMIT:g}, {MEL_VALUE_LIMIT:g}] (natural "
            f"log of mel magnitudes: silence is -11.5, speech below about 5), got {low:.3g} to "
            f"{high:.3g}; is it in another scale?"
        )


def _frame_range(index: tuple, frames: int) -> tuple[int, int]:
    """``(lo, hi)`` of a ``[:, lo:hi]`` index, the only kind the chunked vocoder takes."""
    if not (isinstance(index, tuple) and len(index) == 2 and index[0] == slice(None) and isinstance(index[1], slice)):
        raise IndexError(f"a streamed mel is indexed as mel[:, lo:hi], got {index!r}")
    lo, hi, step = index[1].indices(frames)
    if step != 1:
        raise IndexError(f"a streamed mel is read in contiguous frames, got step {step}")
    return lo, max(lo, hi)


class NpyMel:
    """A (80, frames) .npy mel read from its file one slice of frames at a time, as float32 tensors.

    Read with ``np.fromfile`` at the slice's offset, not through a memory map: a map's pages, once read,
    stay in the process's resident memory, and an hour's mel is 95 MiB (a day's, 2.2 GiB).
    """

    def __init__(self, path: Path, header: np.memmap) -> None:
        self.path, self.shape, self.dtype, self.offset = path, header.shape, header.dtype, header.offset
        self.fortran = header.flags.f_contiguous and not header.flags.c_contiguous

    def __getitem__(self, index: tuple) -> torch.Tensor:
        lo, hi = _frame_range(index, self.shape[1])
        rows, frames, size = self.shape[0], self.shape[1], self.dtype.itemsize
        with open(self.path, "rb") as handle:
            if self.fortran:  # frame after frame: one read
                handle.seek(self.offset + lo * rows * size)
                block = np.fromfile(handle, self.dtype, (hi - lo) * rows).reshape(hi - lo, rows).T
            else:  # mel row after mel row: one read per row
                block = np.empty((rows, hi - lo), self.dtype)
                for row in range(rows):
                    handle.seek(self.offset + (row * frames + lo) * size)
                    block[row] = np.fromfile(handle, self.dtype, hi - lo)
        return torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))  # a copy, whatever the dtype

    def numpy(self) -> np.ndarray:
        """The whole mel in memory (for short inputs and tests)."""
        return self[:, :].numpy()


class WavMel:
    """The log-mel (80, frames) of a WAV file, computed for the frames asked for: ``mel[:, lo:hi]`` equals
    ``mel_spectrogram_long(read_wav(path))[:, lo:hi]`` (to float rounding) from the samples those frames see.

    Frame ``f`` is the STFT of samples ``[f * hop - pad, f * hop - pad + n_fft)`` of the reflect-padded
    wave, so a slice of frames needs one block of samples, reflected at the clip's two ends as the whole
    wave is, and the same framing, filterbank and log as ``mel_spectrogram_long``.
    """

    def __init__(self, wave: WavBlocks, config: MelConfig = MEL) -> None:
        if wave.length <= config.padding:
            raise ValueError(f"WavMel needs more than {config.padding} samples, got {wave.length}")
        self.wave, self.config = wave, config
        self.shape = (config.n_mels, wave.length // config.hop_length)

    def __getitem__(self, index: tuple) -> torch.Tensor:
        lo, hi = _frame_range(index, self.shape[1])
        c, length = self.config, self.wave.length
        if hi == lo:
            return torch.zeros(c.n_mels, 0)
        # the padded wave's positions these frames cover, mapped to the wave's own samples: F.pad's reflect
        positions = np.arange(lo * c.hop_length, (hi - 1) * c.hop_length + c.n_fft) - c.padding
        positions = np.abs(positions)
        positions = np.where(positions >= length, 2 * (length - 1) - positions, positions)
        first = int(positions.min())
        block = self.wave.read(first, int(positions.max()) + 1)
        padded = torch.from_numpy(block[positions - first])
        basis, window = _cached_basis(c, padded.device, padded.dtype)
        return _log_mel_of_padded(padded[None], c, basis, window)[0]

    def numpy(self) -> np.ndarray:
        """The whole mel in memory (for short inputs and tests)."""
        return self[:, :].numpy()


# layers that mix nothing across frames or samples (the plugin's norms act on channels)
_POINTWISE = (nn.Linear, nn.LayerNorm, nn.LeakyReLU, nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Identity, nn.Dropout)
# modules whose forward is only their children in order, plus pointwise or per-frame work
_CONTAINERS = (nn.Sequential, VocosStem, ISTFTHead, MelStem, MelGANHead, ResidualBlock, TrunkBlock)


def context_frames(generator: GeneratorSet, modality: str = "speech") -> int:
    """Mel frames on each side that the samples of one frame depend on: the radius of the generator's
    receptive field, the overlap that makes chunked vocoding equal to unchunked.

    Read from the layers the modality goes through (stem, its trunk blocks, head), each conv's reach
    counted at the rate it runs: a vocos generator is ``stem // 2 + depth * (trunk.kernel_size // 2) + 2``
    (the inverse STFT's frames overlap 4 deep: ``((n_fft + hop) // 2 - 1) // hop`` on each side), plus
    ``3 * phase_iterations`` (:func:`mmgan_speech.vocos.projection_reach`). A
    ValueError for a layer it cannot bound (anything that may mix over time in a way not listed here).
    """
    depth = generator.depths.get(modality, -1)
    blocks = list(generator.trunk.blocks)
    head = generator.heads[modality]
    parts = [generator.stems[modality], *(blocks[:depth] if depth >= 0 else blocks), head]
    # a head's phase projections (vocos.project_phase) mix frames before its inverse STFT makes samples
    reach = float(getattr(head, "phase_iterations", 0) * projection_reach(MEL))
    rate = 1  # reach in frames; rate: samples per frame where the layer runs
    for layer in (leaf for part in parts for leaf in _layers(part)):
        if isinstance(layer, nn.ConvTranspose1d):
            if layer.dilation != (1,):
                raise ValueError(f"context_frames: cannot bound a dilated {layer}")
            (k,), (s,), (p,) = layer.kernel_size, layer.stride, layer.padding
            # input i feeds outputs i * s - p + t (t < k): the outputs of input j's span see inputs up to
            # (s - 1 + p) // s after j and (k - 1 - p) // s before it
            reach += max((s - 1 + p) // s, (k - 1 - p) // s) / rate
            rate *= s
        elif isinstance(layer, nn.Conv1d):
            if layer.stride != (1,) or isinstance(layer.padding, str):
                raise ValueError(f"context_frames: cannot bound a strided or {layer.padding!r}-padded {layer}")
            span = layer.dilation[0] * (layer.kernel_size[0] - 1)
            left = layer.padding[0] or span // 2  # unpadded: a ReflectionPad1d before it centres it
            reach += max(left, span - left) / rate
        elif isinstance(layer, InverseSTFT):
            reach += ((layer.n_fft + layer.hop_length) // 2 - 1) // layer.hop_length / rate
            rate *= layer.hop_length
        elif not isinstance(layer, (*_POINTWISE, ReflectionPad1d)):
            raise ValueError(f"context_frames: cannot bound the receptive field of {type(layer).__name__}")
    return int(np.ceil(reach - 1e-9))


def _layers(module: nn.Module) -> Iterator[nn.Module]:
    """The layers of ``module`` in order: convolutions and inverse STFTs whole (weight norm's
    parametrisations inside them are weights, not layers), known containers opened."""
    if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d, InverseSTFT)) or not any(module.children()):
        yield module
    elif isinstance(module, _CONTAINERS):
        for child in module.children():
            yield from _layers(child)
    else:
        raise ValueError(f"context_frames: cannot bound the receptive field of {type(module).__name__}")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16`` for a ``--precision``: ``auto`` is bf16 where ``device`` computes it natively."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def _device_of(generator: Callable) -> torch.device:
    if isinstance(generator, nn.Module):
        for tensor in generator.parameters():
            return tensor.device
    return torch.device("cpu")


@torch.inference_mode()
def vocode_chunks(
    generator: GeneratorSet | Callable[[str, torch.Tensor], torch.Tensor],
    mel: torch.Tensor | NpyMel | WavMel,
    chunk_frames: int = 1024,
    overlap: int | None = None,
    progress: bool = False,
    modality: str = "speech",
    precision: str = "fp32",
) -> Iterator[torch.Tensor]:
    """Waveform pieces (float32) for a log-mel (80, frames), ``chunk_frames * hop`` samples each (the last
    shorter). ``overlap``: frames of context on each side, by default :func:`context_frames` of a
    GeneratorSet (``DEFAULT_OVERLAP`` for another callable). Both are rounded up to a multiple of
    :func:`mmgan_speech.vocos.phase_period` (4 frames), so every chunk starts where a phase-advancing head's
    phases start over. ``precision``: ``bf16`` runs the generator
    under bf16 autocast on its device, ``auto`` where that device has native bf16; ``fp32`` adds no
    autocast of its own (a caller's still applies)."""
    if chunk_frames < 1 or (overlap is not None and overlap < 0):
        raise ValueError(f"chunk_frames must be >= 1 and overlap >= 0, got {chunk_frames}, {overlap}")
    device = _device_of(generator)
    bf16 = resolve_precision(precision, device) == "bf16"
    if overlap is None:
        overlap = context_frames(generator, modality) if isinstance(generator, GeneratorSet) else DEFAULT_OVERLAP
    # a vocos head's phase projections (momentum Griffin-Lim) amplify float32 rounding, which differs between
    # a chunk and the whole mel by ~1e-7, to ~1e-5 after 16 of them: in fp32 such a generator runs in float64
    # (a copy), so chunked equals unchunked to far below 1e-5 (tested)
    dtype = torch.float32
    if not bf16 and isinstance(generator, GeneratorSet) and modality in generator.heads \
            and getattr(generator.heads[modality], "phase_iterations", 0) > 0:
        generator, dtype = copy.deepcopy(generator).double(), torch.float64
    frames, hop = mel.shape[-1], MEL.hop_length
    # chunks start (context included) on a multiple of the head's phase period, where a phase-advancing
    # head (vocos.ISTFTHead) gives a chunk the phases of the whole mel: chunk and overlap rounded up to it
    period = phase_period(MEL)
    chunk_frames, overlap = -(-chunk_frames // period) * period, -(-overlap // period) * period
    if overlap >= frames:
        chunk_frames = frames  # every chunk would hold the whole mel: one forward instead of many identical ones
    starts = range(0, frames, chunk_frames)
    for start in tqdm(starts, desc="vocode", unit="chunk", disable=not progress or len(starts) < 2):
        stop = min(frames, start + chunk_frames)
        lo, hi = max(0, start - overlap), min(frames, stop + overlap)
        with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            wave = generator(modality, mel[:, lo:hi][None].to(device, dtype)).reshape(-1)
        yield wave[(start - lo) * hop : (stop - lo) * hop].float()


def vocode(
    generator: GeneratorSet | Callable[[str, torch.Tensor], torch.Tensor],
    mel: torch.Tensor | NpyMel | WavMel,
    chunk_frames: int = 1024,
    overlap: int | None = None,
    progress: bool = False,
    modality: str = "speech",
    precision: str = "fp32",
) -> torch.Tensor:
    """Waveform (frames * hop,) for a log-mel (80, frames), generated ``chunk_frames`` at a time
    (:func:`vocode_chunks`)."""
    return torch.cat(list(vocode_chunks(generator, mel, chunk_frames, overlap, progress, modality, precision)))
