"""Vocoder quality of a speech run against Griffin-Lim from the same log-mels, on held-out clips.

    python benchmarks/quality_speech.py runs/<speech-run> [--clips 8] [--seconds 4] [--clip-seed 1]
    python benchmarks/quality_speech.py runs/<speech-run> --data runs/flite/test [--json rows.jsonl]
    python benchmarks/quality_speech.py --data runs/flite/test --contenders griffin-lim  # no run needed

Copy synthesis: held-out clip -> log-mel (the one mel of the speech plugin) -> waveform, by

- **mmgan**: the run's exported EMA vocoder, weight norm removed, through ``vocode`` as ``mmgan vocode`` runs it;
- **griffin-lim**: the log-mel inverted to a linear magnitude (non-negative least squares through the mel
  filterbank), then 32 Griffin-Lim iterations (Griffin & Lim 1984) from random phase, with the mel's own
  STFT (n_fft 1024, hop 256, Hann 1024, the same reflect padding and framing);
- **fast-griffin-lim**: the same with momentum 0.99 (Perraudin et al. 2013; librosa's default);
- **untrained**: the run's network at its initial weights (the run's seed), a floor.

Then every speech metric of ``mmgan_speech.metrics`` between the original and the resynthesised clip, averaged
over clips. The clips come from ``mmgan_speech.metrics.held_out_clips(--data, --clips, --clip-seed)``: by default
(``builtin:speech``) ``SpeechLikeDataset(seed=--clip-seed).clip(i, --seconds)``, a random stream disjoint from
every training item, so none was seen in training; with a folder, an LJSpeech root or a .wav file (real speech
that no run trained on, say ``benchmarks/flite_speech.py``'s test split), whole files in an order shuffled by
``--clip-seed``, each cut at ``--seconds`` if given (else at 30 s).

``--contenders`` picks some of the four (``mmgan`` and ``untrained`` need the run; the Griffin-Lims do not), and
``--json PATH`` appends one JSON line per contender (its mean metrics, the run, data, clips and seconds), for
scripts that collect rows across runs.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from mmgan.api import get_modality, load_generator
from mmgan.errors import DataError
from mmgan_speech.mel import MelConfig, mel_filterbank, mel_spectrogram
from mmgan_speech.metrics import held_out_clips, missing_optional_message, speech_metrics
from mmgan_speech.networks import remove_weight_norm
from mmgan_speech.vocode import vocode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine_header  # noqa: E402
from speech_quality import untrained_like  # noqa: E402

MEL = MelConfig()
BUILTIN = "builtin:speech"
CONTENDERS = ("mmgan", "griffin-lim", "fast-griffin-lim", "untrained")
NEED_RUN = ("mmgan", "untrained")


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
    return wave[mel.padding : length - mel.padding]


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


def griffin_lim(
    magnitude: torch.Tensor, iterations: int = 32, momentum: float = 0.0, seed: int = 0, mel: MelConfig = MEL
) -> torch.Tensor:
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


def means(by_metric: dict[str, list[float]]) -> dict[str, float | None]:
    """Each metric's mean over clips, NaNs (PESQ finding no speech, say) left out; None if every clip gave one."""
    finite = {metric: [v for v in values if not math.isnan(v)] for metric, values in by_metric.items()}
    return {metric: statistics.fmean(values) if values else None for metric, values in finite.items()}


def next_clip(held_out: Iterator[torch.Tensor]) -> torch.Tensor | None:
    """The next held-out clip, None after the last; a source that cannot be read is a one-line exit."""
    try:
        return next(held_out, None)
    except DataError as exc:
        sys.exit(f"error: {exc}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, nargs="?", help="a speech run (needed by mmgan and untrained)")
    parser.add_argument(
        "--data",
        default=BUILTIN,
        help="held-out clips: builtin:speech, a folder, an LJSpeech root or a .wav file (default builtin:speech)",
    )
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, help="clip length (builtin: default 4) or cut (folder: whole files)")
    parser.add_argument("--clip-seed", type=int, default=1, help="seed of the held-out clips (stream or file order)")
    parser.add_argument(
        "--contenders", default=",".join(CONTENDERS), help="comma-separated, from " + ", ".join(CONTENDERS)
    )
    parser.add_argument("--json", type=Path, help="append one JSON line per contender with its mean metrics")
    parser.add_argument("--last", action="store_true", help="the run's last export, not the best it kept")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="mmgan's vocoding precision")
    parser.add_argument("--checkpoint", type=Path, help="score this checkpoint directory's EMA generator")
    parser.add_argument("--seed", type=int, default=0, help="run.seed of the run (the untrained init)")
    parser.add_argument("--gl-iterations", type=int, default=32)
    parser.add_argument("--phase-iterations", type=int, help="mmgan's vocos head projections (default: the run's)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    names = [name.strip() for name in args.contenders.split(",") if name.strip()]
    if not names or any(name not in CONTENDERS for name in names):
        parser.error(f"--contenders takes names from {', '.join(CONTENDERS)}, got {args.contenders!r}")
    if args.run is None and any(name in NEED_RUN for name in names):
        asked = [name for name in names if name in NEED_RUN]
        parser.error(
            f"{' and '.join(asked)} {'needs' if len(asked) == 1 else 'need'} a run; give one, or ask "
            "--contenders griffin-lim,fast-griffin-lim"
        )
    builtin = args.data == BUILTIN
    if builtin and args.seconds is None:
        args.seconds = 4.0
    torch.set_num_threads(args.threads)
    machine_header(args.threads)
    if (message := missing_optional_message()) is not None:
        print(f"note: {message}")
    get_modality("speech")

    synthesisers = {
        "griffin-lim": lambda _, magnitude: griffin_lim(magnitude, args.gl_iterations),
        "fast-griffin-lim": lambda _, magnitude: griffin_lim(magnitude, args.gl_iterations, 0.99),
    }
    if "mmgan" in names:
        trained, _ = load_generator(args.run, "speech", last=args.last)
        if args.checkpoint is not None:  # that step's EMA generator instead of the export
            from safetensors.torch import load_file

            state = load_file(str(args.checkpoint / "mmgan_state.safetensors"))
            ema = {key[len("ema."):]: value for key, value in state.items() if key.startswith("ema.")}
            trained.load_state_dict({k: v for k, v in ema.items() if k in trained.state_dict()}, strict=True)
        remove_weight_norm(trained)
        if args.phase_iterations is not None:  # as `mmgan vocode --phase-iterations`
            trained.heads["speech"].phase_iterations = args.phase_iterations
        synthesisers["mmgan"] = lambda log_mel, _: vocode(trained, log_mel, precision=args.precision)
    if "untrained" in names:
        untrained = untrained_like(args.run, args.seed)
        remove_weight_norm(untrained)
        synthesisers["untrained"] = lambda log_mel, _: vocode(untrained, log_mel)
    contenders = {name: synthesisers[name] for name in CONTENDERS if name in names}
    scores: dict[str, dict[str, list[float]]] = {name: {} for name in contenders}
    clips = 0
    audio_seconds = 0.0
    # held_out_clips renders built-in clips of --seconds, and gives files whole: those are cut here
    held_out = held_out_clips(args.data, args.clips, args.clip_seed, args.seconds or 4.0, MEL.sample_rate)
    while (clip := next_clip(held_out)) is not None:
        if not builtin and args.seconds is not None:
            clip = clip[: int(args.seconds * MEL.sample_rate)]
        clip = clip[: clip.shape[-1] // MEL.hop_length * MEL.hop_length]
        log_mel = mel_spectrogram(clip, MEL)
        magnitude = mel_to_magnitude(log_mel)
        for name, synthesise in contenders.items():
            with torch.inference_mode():
                wave = synthesise(log_mel, magnitude)
            for metric, value in speech_metrics(wave, clip, MEL.sample_rate, MEL.sample_rate).items():
                scores[name].setdefault(metric, []).append(value)
        clips += 1
        audio_seconds += clip.shape[-1] / MEL.sample_rate
        print(f"clip {clips}/{args.clips} done", file=sys.stderr)
    if clips == 0:
        sys.exit(f"error: {args.data} gave no usable clip (all unreadable, silent or under 0.1 s)")

    if builtin:
        source = (
            f"{clips} held-out clips of {args.seconds} s: SpeechLikeDataset(seed={args.clip_seed}).clip(i), "
            f"i = 0..{clips - 1}"
        )
    else:
        cut = f"cut at {args.seconds} s" if args.seconds is not None else "whole (up to 30 s)"
        source = (
            f"{clips} held-out clips from {args.data} ({audio_seconds:.1f} s in all): files in the order "
            f"of seed {args.clip_seed}, {cut}"
        )
    print(f"\n{source}; run {args.run}; Griffin-Lim {args.gl_iterations} iterations")
    table = {name: means(by_metric) for name, by_metric in scores.items()}
    metrics = list(next(iter(table.values())))
    print("| vocoder | " + " | ".join(metrics) + " |")
    print("|---|" + "---:|" * len(metrics))
    for name, row in table.items():
        cells = [f"{row[metric]:.3f}" if row[metric] is not None else "n/a" for metric in metrics]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json is not None:
        with args.json.open("a", encoding="utf-8") as rows:
            for name, row in table.items():
                rows.write(
                    json.dumps(
                        {
                            "contender": name,
                            "run": None if args.run is None else str(args.run),
                            "checkpoint": None if args.checkpoint is None else str(args.checkpoint),
                            "precision": args.precision if name == "mmgan" else None,
                            "phase_iterations": args.phase_iterations if name == "mmgan" else None,
                            "data": args.data,
                            "clips": clips,
                            "seconds": args.seconds,
                            "audio_seconds": round(audio_seconds, 3),
                            "clip_seed": args.clip_seed,
                            "gl_iterations": args.gl_iterations,
                            "metrics": row,
                        }
                    )
                    + "\n"
                )


if __name__ == "__main__":
    main()
