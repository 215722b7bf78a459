"""Which half of a vocos vocoder's spectrum is wrong: its magnitude or its phase? On held-out clips.

    PYTHONPATH=.:plugins python benchmarks/speech_phase.py runs/<speech-run> [runs/<other-run> ...]
        [--data runs/flite/test] [--clips 8] [--seconds 4] [--threads 1]

For each clip (``mmgan_speech.metrics.held_out_clips``: the built-in set's held-out stream, or the files of a
folder), the run's exported vocos generator makes its spectrum (log-magnitude and phase per frame and bin,
the head's own, before the inverse STFT), and waves are made from mixed halves, each scored by log-mel L1
against the clip (lower is better):

- ``wave``: the generator's own output (its magnitude and its phase);
- ``true magnitude + its phase``: the clip's own STFT magnitude with the generator's phase: how good its phase is;
- ``prior magnitude + its phase``: the mel's least-squares magnitude (the filterbank's pseudo-inverse,
  ``speech.magnitude_prior``) with the generator's phase;
- ``phase loss``: ``losses.phase_derivative_loss`` of the output (0 = the clip's phase steps, ~0.5 random).

And once, with no run, references: the true magnitude with a random phase, with each bin's
centre-frequency advance (``speech.phase_advance`` at a zero output), and the prior magnitude with that
advance. A phase no better than random says the network has not learnt phase at all.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import torch

from mmgan.api import load_generator
from mmgan_speech.losses import phase_derivative_loss
from mmgan_speech.mel import MelConfig, mel_spectrogram
from mmgan_speech.metrics import held_out_clips
from mmgan_speech.vocos import InverseSTFT, ISTFTHead, frame_spectrum

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine_header  # noqa: E402

MEL = MelConfig()


def mel_l1(wave: torch.Tensor, mel: torch.Tensor) -> float:
    return float((mel_spectrogram(wave.reshape(1, -1)) - mel).abs().mean())


def references(clips: list[torch.Tensor]) -> dict[str, float]:
    """The run-free rows: true or prior magnitude with a random phase or the centre-frequency advance."""
    inverse, head = InverseSTFT(MEL), ISTFTHead(8, MEL, phase_advance=True, magnitude_prior=True)
    rows: dict[str, list[float]] = {}
    for i, wave in enumerate(clips):
        mel, magnitude = mel_spectrogram(wave), frame_spectrum(wave).abs()
        random = torch.rand(magnitude.shape, generator=torch.Generator().manual_seed(i)) * 2 * math.pi
        advance = head.centre_phase(magnitude.shape[-1], magnitude.device).expand_as(magnitude)
        prior = head.prior(mel).exp()
        for name, mag, phase in (("true magnitude + random phase", magnitude, random),
                                 ("true magnitude + centre advance", magnitude, advance),
                                 ("prior magnitude + centre advance", prior, advance)):
            rows.setdefault(name, []).append(mel_l1(inverse(torch.polar(mag, phase)), mel))
    return {name: statistics.mean(values) for name, values in rows.items()}


def score_run(run: Path, clips: list[torch.Tensor]) -> dict[str, float]:
    """The rows of one run's exported generator (see the module docstring)."""
    generator, config = load_generator(run, "speech")
    head = generator.heads["speech"]
    if not isinstance(head, ISTFTHead):
        raise SystemExit(f"{run}: speech.generator is {config.generator!r}; this diagnostic reads a vocos head")
    seen: dict[str, torch.Tensor] = {}
    hook = head.to_spectrum.register_forward_hook(lambda module, args, out: seen.__setitem__("x", out))
    prior_head = ISTFTHead(8, MEL, magnitude_prior=True)
    rows: dict[str, list[float]] = {}
    try:
        for wave in clips:
            mel = mel_spectrogram(wave)
            with torch.no_grad():
                out = generator("speech", mel).reshape(1, -1)
                phase = seen["x"].transpose(1, 2)[:, head.bins:].float()
                if head.phase_advance:
                    phase = phase + head.centre_phase(phase.shape[-1], phase.device)
                true = frame_spectrum(wave).abs()
                for name, value in (
                    ("wave", mel_l1(out, mel)),
                    ("true magnitude + its phase", mel_l1(head.istft(torch.polar(true, phase)), mel)),
                    ("prior magnitude + its phase",
                     mel_l1(head.istft(torch.polar(prior_head.prior(mel).exp(), phase)), mel)),
                    ("phase loss", float(phase_derivative_loss(out, wave[:, : out.shape[-1]]))),
                ):
                    rows.setdefault(name, []).append(value)
    finally:
        hook.remove()
    return {name: statistics.mean(values) for name, values in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--data", default="builtin:speech")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--clip-seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep = int(args.seconds * MEL.sample_rate) // MEL.hop_length * MEL.hop_length  # whole frames, at most --seconds
    clips = [clip.reshape(1, -1)[:, : min(keep, clip.numel() // MEL.hop_length * MEL.hop_length)].float()
             for clip in held_out_clips(args.data, args.clips, args.clip_seed, args.seconds)]
    machine_header(args.threads)
    print(f"\n{len(clips)} held-out clips of {args.data}; log-mel L1 against each clip (lower is better)\n")
    print("| source | row | value |\n|:--|:--|--:|")
    for name, value in references(clips).items():
        print(f"| (no run) | {name} | {value:.3f} |")
    for run in args.runs:
        for name, value in score_run(run, clips).items():
            print(f"| {run} | {name} | {value:.3f} |")


if __name__ == "__main__":
    main()
