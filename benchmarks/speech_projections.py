"""Would Griffin-Lim projections help a vocos vocoder? Its own spectrum, made consistent, against its wave.

    PYTHONPATH=.:plugins python benchmarks/speech_projections.py runs/<speech-run> [--clips 8] [--seconds 4]
        [--data runs/flite/test] [--iterations 4,8,16,32] [--threads 1]

For each held-out clip (``mmgan_speech.metrics.held_out_clips``), the run's exported vocos generator makes its
wave and, on the way, its spectrum (the head's magnitude and phase before the inverse STFT); with its
``speech.phase_iterations`` set to 0, so the spectrum is the network's own. Then every speech metric of
``mmgan_speech.metrics.speech_metrics`` for:

- ``wave``: the generator's output as vocoding makes it with no projections;
- ``its magnitude, K from its phase``: K fast Griffin-Lim iterations (``vocos.project_phase``) from the
  head's phase with the head's magnitude kept: what the projections would make of this network untrained;
- ``NNLS magnitude, K from its phase``: the same from the mel's non-negative least-squares magnitude
  (``quality_speech.mel_to_magnitude``, Griffin-Lim's), the head's phase as the start;
- ``griffin-lim``: 32 iterations from random phase and the NNLS magnitude, the issue's baseline.

Means over the clips, one row each (docs/benchmarks.md, "Phase projections in the head").
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from mmgan.api import get_modality
from mmgan_speech.mel import MelConfig, mel_spectrogram
from mmgan_speech.metrics import held_out_clips, speech_metrics
from mmgan_speech.networks import remove_weight_norm
from mmgan_speech.vocode import vocode
from mmgan_speech.vocos import project_phase

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine_header  # noqa: E402
from quality_speech import griffin_lim, mel_to_magnitude  # noqa: E402

MEL = MelConfig()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a speech run with speech.generator = vocos")
    parser.add_argument("--data", default="builtin:speech", help="held-out clips (default builtin:speech)")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0, help="clip length (builtin) or cut (folder)")
    parser.add_argument("--clip-seed", type=int, default=1)
    parser.add_argument("--iterations", default="4,8,16,32", help="comma-separated projection counts")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    counts = [int(k) for k in args.iterations.split(",") if k.strip()]
    torch.set_num_threads(args.threads)
    machine_header(args.threads)
    get_modality("speech")
    from mmgan.api import load_generator

    generator, config = load_generator(args.run, "speech")
    if config.generator != "vocos":
        sys.exit(f"error: {args.run} is a {config.generator} run; the projections are the vocos head's")
    remove_weight_norm(generator)
    head = generator.heads["speech"]
    head.phase_iterations = 0
    spectra: list[torch.Tensor] = []
    inverse = head.istft.forward
    head.istft.forward = lambda spectrum: spectra.append(spectrum) or inverse(spectrum)

    scores: dict[str, dict[str, list[float]]] = {}
    for clip in held_out_clips(args.data, args.clips, args.clip_seed, args.seconds, MEL.sample_rate):
        clip = clip[: int(args.seconds * MEL.sample_rate)]
        clip = clip[: clip.shape[-1] // MEL.hop_length * MEL.hop_length]
        log_mel = mel_spectrogram(clip, MEL)
        nnls = mel_to_magnitude(log_mel)[None]
        spectra.clear()
        with torch.inference_mode():
            waves = {"wave": vocode(generator, log_mel, chunk_frames=log_mel.shape[-1])}
            (spectrum,) = spectra  # one chunk: the whole clip
            magnitude, phase = spectrum.abs(), spectrum.angle()
            for k in counts:
                waves[f"its magnitude, {k} from its phase"] = head.istft(
                    project_phase(magnitude, phase, k, head.istft))
            for k in counts:
                waves[f"NNLS magnitude, {k} from its phase"] = head.istft(project_phase(nnls, phase, k, head.istft))
            waves["griffin-lim, 32 from random phase"] = griffin_lim(nnls[0], 32)
        for name, wave in waves.items():
            for metric, value in speech_metrics(wave.reshape(-1), clip, MEL.sample_rate, MEL.sample_rate).items():
                scores.setdefault(name, {}).setdefault(metric, []).append(value)
    if not scores:
        sys.exit(f"error: {args.data} gave no clip")
    metrics = list(next(iter(scores.values())))
    print(f"\n{args.run}; {len(next(iter(next(iter(scores.values())).values())))} clips of {args.data}")
    print("| made from | " + " | ".join(metrics) + " |")
    print("|:--|" + "--:|" * len(metrics))
    for name, by_metric in scores.items():
        cells = [f"{statistics.fmean(v for v in by_metric[m] if v == v):.3f}" if any(v == v for v in by_metric[m])
                 else "n/a" for m in metrics]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
