"""Log-mel L1 of a speech run's vocoder on held-out built-in clips, next to the same network untrained.

    python benchmarks/speech_quality.py runs/<speech-run> [--clips 8] [--seconds 4]

Copy synthesis: held-out clip -> log-mel -> vocoder -> log-mel; the distance is the mean absolute
difference of the two log-mels (the one mel definition of the speech plugin). The untrained generator
is built from the run's exported config with the run's seed, so it is the network the run started from.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from mmgan.api import get_modality, get_plugin_manager, load_generator
from mmgan.config import section_from_dict
from mmgan.engine import build_generators
from mmgan.trunk import GeneratorSet, TrunkConfig
from mmgan_speech.datasets import SpeechLikeDataset
from mmgan_speech.losses import mel_l1
from mmgan_speech.mel import mel_spectrogram
from mmgan_speech.networks import remove_weight_norm
from mmgan_speech.samples import mel_image
from mmgan_speech.vocode import vocode


def untrained_like(run: Path, seed: int) -> GeneratorSet:
    from mmgan.config import RunConfig

    trained, config = load_generator(run, "speech")
    torch.manual_seed(seed)
    run_config = RunConfig(trunk=section_from_dict(TrunkConfig, vars(trained.trunk.config), "trunk"),
                           modalities={"speech": config})
    run_config.run.modalities = ["speech"]
    return build_generators(get_plugin_manager(), run_config).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0, help="run.seed of the run (the untrained init)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--png", type=Path, help="write clip 0's log-mels here: original, trained, untrained")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    get_modality("speech")
    trained, _ = load_generator(args.run, "speech")
    untrained = untrained_like(args.run, args.seed)
    for g in (trained, untrained):
        remove_weight_norm(g)
    # seed 1: a stream the default run (seed 0) never trains on, and held-out clips of it
    data = SpeechLikeDataset(seed=1)
    scores = {"trained": [], "untrained": []}
    for i in range(args.clips):
        clip = data.clip(i, args.seconds).reshape(-1)
        clip = clip[: clip.shape[-1] // 256 * 256]
        mel = mel_spectrogram(clip)
        outputs = {name: vocode(g, mel) for name, g in (("trained", trained), ("untrained", untrained))}
        for name, wave in outputs.items():
            scores[name].append(mel_l1(wave, clip).item())
        if i == 0 and args.png is not None:
            rows = [[mel], [mel_spectrogram(outputs["trained"])], [mel_spectrogram(outputs["untrained"])]]
            mel_image(rows, scale=2).save(args.png)
    print(f"# {time.strftime('%Y-%m-%d')} {platform.platform()} torch {torch.__version__}, {args.threads} threads")
    print(f"# run {args.run}, {args.clips} held-out clips of {args.seconds} s (builtin:speech, seed 1)")
    print("| generator | log-mel L1 (mean) | min | max |")
    print("|---|---:|---:|---:|")
    for name, values in scores.items():
        print(f"| {name} | {sum(values) / len(values):.3f} | {min(values):.3f} | {max(values):.3f} |")


if __name__ == "__main__":
    main()
