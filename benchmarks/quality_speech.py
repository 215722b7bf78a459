"""Vocoder quality of a speech run against Griffin-Lim from the same log-mels, on held-out built-in clips.

    python benchmarks/quality_speech.py runs/<speech-run> [--clips 8] [--seconds 4] [--clip-seed 1]

Copy synthesis: held-out clip -> log-mel (the one mel of the speech plugin) -> waveform, by

- **mmgan**: the run's exported EMA vocoder, weight norm removed, through ``vocode`` as ``mmgan vocode`` runs it;
- **griffin-lim**: the log-mel inverted to a linear magnitude (non-negative least squares through the mel
  filterbank), then 32 Griffin-Lim iterations (Griffin & Lim 1984) from random phase, with the mel's own
  STFT (n_fft 1024, hop 256, Hann 1024, the same reflect padding and framing);
- **fast-griffin-lim**: the same with momentum 0.99 (Perraudin et al. 2013; librosa's default);
- **untrained**: the run's network at its initial weights (the run's seed), a floor.

Then every speech metric of ``mmgan_speech.metrics`` between the original and the resynthesised clip, averaged
over clips. The clips come from ``SpeechLikeDataset(seed=--clip-seed).clip(i, seconds)``, a random stream
disjoint from every training item, so none was seen in training.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from mmgan.inference import load_generator
from mmgan.plugins import get_modality
from mmgan_speech.datasets import SpeechLikeDataset
from mmgan_speech.mel import MelConfig, mel_filterbank, mel_spectrogram
from mmgan_speech.metrics import missing_optional_message, speech_metrics
from mmgan_speech.networks import remove_weight_norm
from mmgan_speech.vocode import vocode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine_header  # noqa: E402
from speech_quality import untrained_like  # noqa: E402

MEL = MelConfig()


# --- Griffin-Lim on the mel's own STFT -------------------------------------------------------------------


def stft(wave: torch.Tensor, mel: MelConfig = MEL) -> torch.Tensor:
    """Complex STFT (n_fft // 2 + 1, frames) framed exactly as ``mel_spectrogram`` frames: T // hop frames."""
    padded = F.pad(wave.view(1, 1, -1), (mel.padding, mel.padding), mode="reflect").view(-1)
    frames = padded.unfold(0, mel.n_fft, mel.hop_length)  # (frames, n_fft)
    return torch.fft.rfft(frames * torch.hann_window(mel.win_length, dtype=wave.dtype), dim=-1).T


def istft(spec: torch.Tensor, mel: MelConfig = MEL) -> torch.Tensor:
    """Least-squares inverse of :func:`stft` (Griffin & Lim's overlap-add, divided by the summed squared window)."""
    window = torch.hann_window(mel.win_length, dtype=spec.real.dtype)
    frames = torch.fft.irfft(spec.T, n=mel.n_fft, dim=-1) * window  # (frames, n_fft)
    count = frames.shape[0]
    length = (count - 1) * mel.hop_length + mel.n_fft

    def overlap_add(x: torch.Tensor) -> torch.Tensor:
        return F.fold(x.T[None], (1, length), (1, mel.n_fft), stride=(1, mel.hop_length)).view(-1)

    norm = overlap_add(window.square().expand(count, -1))
    wave = overlap_add(frames) / norm.clamp_min(1e-8)
    return wave[mel.padding: length - mel.padding]


def mel_to_magnitude(log_mel: torch.Tensor, mel: MelConfig = MEL, iterations: int = 200) -> torch.Tensor:
    """Linear magnitude (n_fft // 2 + 1, frames) whose mel is ``exp(log_mel)``: non-negative least squares.

    Starts from the filterbank pseudo-inverse clamped at a small floor, then multiplicative NNLS updates
    (Lee & Seung 2001), which keep it non-negative. Bins above fmax get nothing (the mel holds nothing there).
    """
    basis = mel_filterbank(mel).double()
    target = log_mel.double().exp()
    magnitude = (torch.linalg.pinv(basis) @ target).clamp_min(1e-6)
    numerator = basis.T @ target
    gram = basis.T @ basis
    for _ in range(iterations):
        magnitude = magnitude * numerator / (gram @ magnitude).clamp_min(1e-12)
    return magnitude.float()


def griffin_lim(magnitude: torch.Tensor, iterations: int = 32, momentum: float = 0.0, seed: int = 0,
                mel: MelConfig = MEL) -> torch.Tensor:
    """A waveform of ``frames * hop`` samples whose STFT magnitude approaches ``magnitude``, from random phase.

    ``momentum`` 0 is the original algorithm; 0.99 is the fast Griffin-Lim of Perraudin et al. (librosa's default).
    """
    generator = torch.Generator().manual_seed(seed)
    angles = torch.polar(torch.ones_like(magnitude), 2 * math.pi * torch.rand(magnitude.shape, generator=generator))
    previous = torch.zeros_like(angles)
    for _ in range(iterations):
        rebuilt = stft(istft(magnitude * angles, mel), mel)
        angles = rebuilt - (momentum / (1 + momentum)) * previous
        angles = angles / (angles.abs() + 1e-16)
        previous = rebuilt
    return istft(magnitude * angles, mel)


# --- the comparison ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--clip-seed", type=int, default=1, help="seed of the held-out SpeechLikeDataset stream")
    parser.add_argument("--seed", type=int, default=0, help="run.seed of the run (the untrained init)")
    parser.add_argument("--gl-iterations", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine_header(args.threads)
    if (message := missing_optional_message()) is not None:
        print(f"note: {message}")
    get_modality("speech")

    trained, _ = load_generator(args.run, "speech")
    untrained = untrained_like(args.run, args.seed)
    for g in (trained, untrained):
        remove_weight_norm(g)
    contenders = {
        "mmgan": lambda log_mel, _: vocode(trained, log_mel),
        "griffin-lim": lambda _, magnitude: griffin_lim(magnitude, args.gl_iterations),
        "fast-griffin-lim": lambda _, magnitude: griffin_lim(magnitude, args.gl_iterations, 0.99),
        "untrained": lambda log_mel, _: vocode(untrained, log_mel),
    }
    data = SpeechLikeDataset(seed=args.clip_seed)
    scores: dict[str, dict[str, list[float]]] = {name: {} for name in contenders}
    for i in range(args.clips):
        clip = data.clip(i, args.seconds).reshape(-1)
        clip = clip[: clip.shape[-1] // MEL.hop_length * MEL.hop_length]
        log_mel = mel_spectrogram(clip, MEL)
        magnitude = mel_to_magnitude(log_mel)
        for name, synthesise in contenders.items():
            with torch.inference_mode():
                wave = synthesise(log_mel, magnitude)
            for metric, value in speech_metrics(wave, clip, MEL.sample_rate, MEL.sample_rate).items():
                scores[name].setdefault(metric, []).append(value)
        print(f"clip {i + 1}/{args.clips} done", file=sys.stderr)

    print(f"\n{args.clips} held-out clips of {args.seconds} s: SpeechLikeDataset(seed={args.clip_seed}).clip(i), "
          f"i = 0..{args.clips - 1}; run {args.run}; Griffin-Lim {args.gl_iterations} iterations")
    metrics = list(next(iter(scores.values())))
    print("| vocoder | " + " | ".join(metrics) + " |")
    print("|---|" + "---:|" * len(metrics))
    for name, by_metric in scores.items():
        cells = []
        for metric in metrics:
            values = [v for v in by_metric[metric] if not math.isnan(v)]
            cells.append(f"{statistics.fmean(values):.3f}" if values else "n/a")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
