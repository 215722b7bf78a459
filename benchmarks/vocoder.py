"""Real-time factor of `mmgan vocode` and speech training step time, next to the same networks without mmgan,
for both speech generators (melgan and vocos).

    python benchmarks/vocoder.py                              # 10 s of audio, 2 threads, fp32
    python benchmarks/vocoder.py --run runs/speech --bf16 --json runs/vocoder.json
    python benchmarks/vocoder.py --set trunk.depth=8          # a deeper trunk for both generators

Both parts run in one process, interleaved (round-robin blocks, order rotated each round), on the same inputs.
A. Vocoding the log-mel of a held-out built-in clip (SpeechLikeDataset(seed=1).clip(0, --seconds)), weight norm
   removed, under torch.inference_mode; real-time factor = seconds of audio / seconds of compute:
     mmgan        what `mmgan vocode` does after reading its input: load_generator, remove_weight_norm, vocode()
                  with its default chunking (from --run, else an untrained melgan generator exported here)
     bare         the same weights in MelStem -> LatentTrunk -> MelGANHead, one forward over the whole mel
     melgan-paper the same weights in MelStem -> MelGANHead (no trunk): the paper's generator, one forward
     vocos        `mmgan vocode` of a vocos run (speech.generator=vocos; from --vocos-run, else untrained)
     vocos-bare   the same weights in VocosStem -> LatentTrunk -> ISTFTHead, one forward
     vocos-pK     `mmgan vocode --phase-iterations K` of the vocos run, for each K of --phase-iterations
B. One training step at --batch x --segment samples (D hinge step, then G hinge + 10 FM + 45 mel L1 step, D frozen):
     mmgan        Trainer.train_step of a melgan run (its recipe: Accelerate, plugin hooks, EMA)
     bare         the same networks, losses and Adam (1e-4, (0.5, 0.9)) in a hand-written loop
     vocos        Trainer.train_step of the default speech run, vocos (its own discriminators: mpd+mrd; a GAN
                  step: the default's reconstruction warm-up steps run no D and cost far less)
     vocos-bare   the vocos networks and the same losses in the hand-written loop (without the default's
                  MR-STFT term, which the mmgan row includes)
mmgan / bare is the framework's overhead (in A: chunking included); bare / melgan-paper is the trunk's cost;
vocos / mmgan is what the frame-rate generator gains. --set applies to both runs (trunk sizes, say).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from harness import machine_header, trainer_step_fn
from torch import nn
from torch.utils.data import DataLoader

from mmgan.api import get_modality, load_generator
from mmgan.config import resolve
from mmgan.engine import Trainer
from mmgan.trunk import GeneratorSet, LatentTrunk
from mmgan_speech.datasets import SpeechLikeDataset
from mmgan_speech.mel import MelConfig, mel_spectrogram
from mmgan_speech.networks import remove_weight_norm
from mmgan_speech.plugin import plugin as speech_plugin
from mmgan_speech.vocode import vocode

SEED = 0
MEL = MelConfig()


class Generator(nn.Module):
    """Log-mel -> stem -> (LatentTrunk) -> head: mmgan's speech generator without the framework."""

    def __init__(self, stem: nn.Module, trunk: LatentTrunk | None, head: nn.Module) -> None:
        super().__init__()
        self.stem, self.trunk, self.head = stem, trunk, head

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(mel)
        if self.trunk is not None:
            tokens = self.trunk(tokens, "speech")
        # the vocos head's magnitude prior reads the mel around the trunk (takes_input)
        return self.head(tokens, mel) if getattr(self.head, "takes_input", False) else self.head(tokens)


def autocast(bf16: bool) -> contextlib.AbstractContextManager:
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def interleave(contenders: dict[str, Callable[[], object]], rounds: int, block: int | dict[str, int], warmup: int
               ) -> dict[str, list[float]]:
    """Seconds per block of ``block`` calls (or ``block[name]``: a fast contender's blocks can be as long as
    a slow one's), per contender, round-robin with the order rotated each round."""
    blocks = block if isinstance(block, dict) else dict.fromkeys(contenders, block)
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            for _ in range(blocks[name]):
                contenders[name]()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def plain_generator(generator: GeneratorSet, trunk: bool = True) -> Generator:
    """The exported weights (copies) in a plain stem -> (trunk) -> head module; all trunk blocks, as
    ``speech.trunk_depth = -1``."""
    return Generator(copy.deepcopy(generator.stems["speech"]), copy.deepcopy(generator.trunk) if trunk else None,
                     copy.deepcopy(generator.heads["speech"])).eval().requires_grad_(False)


def vocode_contenders(run: Path, vocos_run: Path | None, mel: torch.Tensor, bf16: bool,
                      phase_iterations: tuple[int, ...] = ()) -> dict[str, Callable[[], object]]:
    def mmgan_fn(generator):
        def fn():
            with torch.inference_mode(), autocast(bf16):
                return vocode(generator, mel)
        return fn

    def plain_fn(net):
        def fn():
            with torch.inference_mode(), autocast(bf16):
                return net(mel[None]).reshape(-1).float()
        return fn

    generator, _ = load_generator(run, "speech")  # as `mmgan vocode` does, then remove_weight_norm
    remove_weight_norm(generator)
    contenders = {"mmgan": mmgan_fn(generator), "bare": plain_fn(plain_generator(generator)),
                  "melgan-paper": plain_fn(plain_generator(generator, trunk=False))}
    if vocos_run is not None:
        vocos, _ = load_generator(vocos_run, "speech")
        contenders |= {"vocos": mmgan_fn(vocos), "vocos-bare": plain_fn(plain_generator(vocos))}
        for k in phase_iterations:  # as `mmgan vocode --phase-iterations K`
            projecting = copy.deepcopy(vocos)
            projecting.heads["speech"].phase_iterations = k
            contenders[f"vocos-p{k}"] = mmgan_fn(projecting)
    return contenders


def hinge_d(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake, strict=True)) / len(real)


def bare_train_fn(config, bf16: bool) -> Callable[[], None]:
    """MelGAN's training loop written out (with mmgan's loss weights) for the run's generator and discriminators
    (the plugin's network classes, built directly); returns a one-step callable."""
    torch.manual_seed(SEED)
    m, t = config.modalities["speech"], config.train
    stem, head = speech_plugin.build_generator(m, config.trunk.width)
    netG = Generator(stem, LatentTrunk(config.trunk, ["speech"]), head)
    netD = speech_plugin.build_discriminator(m)
    optG = torch.optim.Adam(netG.parameters(), lr=t.lr_g, betas=(t.beta1, t.beta2))
    optD = torch.optim.Adam(netD.parameters(), lr=t.lr_d, betas=(t.beta1, t.beta2))
    loader = DataLoader(SpeechLikeDataset(m.segment_length, seed=SEED), batch_size=t.batch_size, shuffle=True,
                        drop_last=True, generator=torch.Generator().manual_seed(SEED))
    data = (batch for _ in itertools.count() for batch in loader)

    def step() -> None:
        real = next(data)
        mel = mel_spectrogram(real.reshape(real.shape[0], -1).float(), MEL)
        # (1) D: hinge on real vs the detached fake; the fake is generated once, reused in (2)
        netD.requires_grad_(True)
        with autocast(bf16):
            fake = netG(mel)
            d_real, d_fake = netD(real), netD(fake.detach())
        errD = hinge_d([x.float() for x in d_real.logits], [x.float() for x in d_fake.logits])
        optD.zero_grad(set_to_none=True)
        errD.backward()
        optD.step()
        # (2) G: hinge + feature matching (on the updated D's real features) + mel L1, D frozen
        netD.requires_grad_(False)
        with autocast(bf16):
            d_fake, d_real = netD(fake), netD(real)
        adv = sum(-f.float().mean() for f in d_fake.logits) / len(d_fake.logits)
        fm = torch.stack([F.l1_loss(f.float(), r.detach().float())
                          for fs, rs in zip(d_fake.features, d_real.features, strict=True)
                          for f, r in zip(fs, rs, strict=True)]).mean()
        mel_loss = F.l1_loss(mel_spectrogram(fake.reshape(fake.shape[0], -1).float(), MEL), mel)
        errG = adv + m.feature_matching_weight * fm + m.mel_weight * mel_loss
        optG.zero_grad(set_to_none=True)
        errG.backward()
        optG.step()
        netD.requires_grad_(True)

    return step


def table(title: str, unit: str, rates: dict[str, list[float]], extra: Callable[[float], str] | None = None) -> None:
    print(f"\n{title}\n")
    print(f"| contender | median {unit} | min | max | ratio to bare |" + (" s/step |" if extra else ""))
    print("|:--|--:|--:|--:|--:|" + ("--:|" if extra else ""))
    bare = statistics.median(rates["bare"])
    for name, r in rates.items():
        med = statistics.median(r)
        tail = f" {extra(med)} |" if extra else ""
        print(f"| {name} | {med:.2f} | {min(r):.2f} | {max(r):.2f} | {med / bare:.3f} |{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a speech run to vocode with (default: untrained, exported here)")
    parser.add_argument("--vocos-run", type=Path, help="a vocos speech run (default: untrained, exported here)")
    parser.add_argument("--no-vocos", action="store_true", help="melgan contenders only")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for both runs, e.g. trunk.depth=8 (repeatable)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of audio to vocode (default 10)")
    parser.add_argument("--rounds", type=int, default=7, help="vocoding round-robin rounds (default 7)")
    parser.add_argument("--block", type=int, default=2, help="vocode calls per timed block (default 2)")
    parser.add_argument("--vocos-block", type=int, default=10,
                        help="vocode calls per timed block of the (fast) vocos contenders (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed vocode calls per contender (default 1)")
    parser.add_argument("--batch", type=int, default=16, help="training batch size (default 16)")
    parser.add_argument("--segment", type=int, default=8192, help="training samples per clip (default 8192)")
    parser.add_argument("--train-rounds", type=int, default=3, help="training rounds, 0 skips part B (default 3)")
    parser.add_argument("--train-block", type=int, default=2, help="training steps per timed block (default 2)")
    parser.add_argument("--train-warmup", type=int, default=1, help="untimed steps per contender (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--phase-iterations", default="", help="comma-separated counts: a vocos-pK row for each")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for every contender, both parts")
    parser.add_argument("--json", metavar="PATH", help="write the raw block timings here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    header = machine_header(args.threads)

    clip = SpeechLikeDataset(seed=1).clip(0, args.seconds).reshape(-1)
    clip = clip[: clip.shape[-1] // MEL.hop_length * MEL.hop_length]
    mel = mel_spectrogram(clip, MEL)
    audio_s = clip.shape[-1] / MEL.sample_rate
    print(f"A: {audio_s:.2f} s of audio ({mel.shape[-1]} frames), {args.rounds} rounds x {args.block} calls "
          f"({args.vocos_block} for vocos), "
          f"warmup {args.warmup}; B: batch {args.batch} x {args.segment} samples, {args.train_rounds} rounds x "
          f"{args.train_block} steps, warmup {args.train_warmup}; bf16={args.bf16}")

    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="mmgan-bench-") as tmp:
        trainers, configs = {}, {}
        # each generator at its own default: melgan as its recipe (examples/configs/speech-melgan.toml: the
        # core's 2-block trunk, no MR-STFT term), vocos as the speech default (8 blocks); both timed as GAN
        # steps (a warm-up step of the default's speech.adversarial_start runs no discriminator at all)
        kinds = {"mmgan": (args.run, ["trunk.depth=2", "speech.stft_weight=0"], ["speech.generator=melgan"]),
                 "vocos": (args.vocos_run, [], ["speech.generator=vocos"])}
        if args.no_vocos:
            del kinds["vocos"]
        for kind, (given, recipe, extra) in kinds.items():
            if args.train_rounds > 0 or given is None:
                overrides = [f"speech.segment_length={args.segment}", "speech.adversarial_start=0",
                             f"train.mixed_precision={'bf16' if args.bf16 else 'no'}", *recipe, *args.overrides,
                             *extra]
                configs[kind] = resolve(get_modality, plugins=["speech"], out=os.path.join(tmp, kind),
                                        steps=10**6, batch_size=args.batch, seed=SEED, overrides=overrides)
                torch.manual_seed(SEED)
                trainers[kind] = Trainer(configs[kind], progress=False)
                if given is None:
                    trainers[kind].export()  # the untrained EMA generator, as a run's export/ holds it
        run = args.run or Path(tmp, "mmgan")
        vocos_run = None if args.no_vocos else args.vocos_run or Path(tmp, "vocos")
        print(f"vocoder: {args.run or 'untrained default generator (no --run)'}; vocos: "
              f"{'-' if args.no_vocos else args.vocos_run or 'untrained vocos generator (no --vocos-run)'}")
        for kind, config in configs.items():
            m, tr = config.modalities["speech"], config.trunk
            print(f"{kind}: generator {m.generator}, discriminator {m.discriminators}, trunk width {tr.width} "
                  f"depth {tr.depth} kernel {tr.kernel_size} expansion {tr.expansion}")
        torch.set_num_threads(args.threads)  # in case anything above changed it
        counts = tuple(int(k) for k in args.phase_iterations.split(",") if k.strip())
        contenders = vocode_contenders(run, vocos_run, mel, args.bf16, () if args.no_vocos else counts)
        waves = {name: fn() for name, fn in contenders.items()}  # a check, and one more warm-up call each
        same = {"mmgan": "bare", "melgan-paper": "bare", "vocos": "vocos-bare"}  # its bare twin
        print("max |wave - bare wave|: " + ", ".join(f"{name} {(w - waves[same[name]]).abs().max().item():.2e}"
                                                  for name, w in waves.items() if name in same))
        blocks = {name: args.vocos_block if name.startswith("vocos") else args.block for name in contenders}
        results["vocode"] = interleave(contenders, args.rounds, blocks, args.warmup)
        if args.train_rounds > 0:
            t = configs["mmgan"].train
            print(f"train: lr_g {t.lr_g}, lr_d {t.lr_d}, betas ({t.beta1}, {t.beta2}), loss "
                  f"{configs['mmgan'].modalities['speech'].loss or t.loss}")
            contenders = {}
            for kind in configs:
                contenders[kind] = trainer_step_fn(trainers[kind])
                contenders["bare" if kind == "mmgan" else f"{kind}-bare"] = bare_train_fn(configs[kind], args.bf16)
            torch.set_num_threads(args.threads)
            results["train"] = interleave(contenders, args.train_rounds, args.train_block, args.train_warmup)

    rtf = {name: [blocks[name] * audio_s / s for s in times] for name, times in results["vocode"].items()}
    table(f"Vocoding {audio_s:.2f} s, {args.threads} threads (real-time factor: audio s per compute s)", "RTF", rtf)
    if "train" in results:
        samples = {name: [args.train_block * args.batch / s for s in blocks]
                   for name, blocks in results["train"].items()}
        table(f"Training step, batch {args.batch} x {args.segment} samples (waveforms/s; s/step)", "samples/s",
              samples, extra=lambda rate: f"{args.batch / rate:.3f}")

    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"header": header, "args": vars(args), "audio_seconds": audio_s, "block_seconds": results},
                      f, indent=2, default=str)


if __name__ == "__main__":
    main()
