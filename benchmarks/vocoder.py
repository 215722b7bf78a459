"""Real-time factor of `mmgan vocode` and speech training step time, next to the same networks without mmgan.

    python benchmarks/vocoder.py                              # 10 s of audio, 2 threads, fp32
    python benchmarks/vocoder.py --run runs/speech --bf16 --json runs/vocoder.json

Both parts run in one process, interleaved (round-robin blocks, order rotated each round), on the same inputs.
A. Vocoding the log-mel of a held-out built-in clip (SpeechLikeDataset(seed=1).clip(0, --seconds)), weight norm
   removed, under torch.inference_mode; real-time factor = seconds of audio / seconds of compute:
     mmgan        what `mmgan vocode` does after reading its input: load_generator, remove_weight_norm, vocode()
                  with its default chunking (from --run, else an untrained default generator exported here)
     bare         the same weights in MelStem -> LatentTrunk -> MelGANHead, one forward over the whole mel
     melgan-paper the same weights in MelStem -> MelGANHead (no trunk): the paper's generator, one forward
B. One training step at --batch x --segment samples (D hinge step, then G hinge + 10 FM + 45 mel L1 step, D frozen):
     mmgan        Trainer.train_step of the default speech run (Accelerate, plugin hooks, EMA)
     bare         the same networks, losses and Adam (1e-4, (0.5, 0.9)) in a hand-written loop
mmgan / bare is the framework's overhead (in A: chunking included); bare / melgan-paper is the trunk's cost.
"""

from __future__ import annotations

import argparse
import contextlib
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

import mmgan.plugins
from mmgan.config import resolve
from mmgan.engine import Trainer
from mmgan.inference import load_generator
from mmgan.trunk import LatentTrunk, TrunkConfig
from mmgan_speech.datasets import SpeechLikeDataset
from mmgan_speech.mel import MelConfig, mel_spectrogram
from mmgan_speech.networks import MelGANHead, MelStem, MultiScaleDiscriminator, remove_weight_norm
from mmgan_speech.vocode import vocode

SEED = 0
MEL = MelConfig()


class Generator(nn.Module):
    """Log-mel -> MelStem -> (LatentTrunk) -> MelGANHead: mmgan's speech generator without the framework."""

    def __init__(self, config: TrunkConfig, ngf: int, trunk: bool) -> None:
        super().__init__()
        self.stem = MelStem(MEL.n_mels, config.width)
        self.trunk = LatentTrunk(config, ["speech"]) if trunk else None
        self.head = MelGANHead(config.width, ngf=ngf)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(mel)
        if self.trunk is not None:
            tokens = self.trunk(tokens, "speech")
        return self.head(tokens)


def autocast(bf16: bool) -> contextlib.AbstractContextManager:
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def interleave(contenders: dict[str, Callable[[], object]], rounds: int, block: int, warmup: int
               ) -> dict[str, list[float]]:
    """Seconds per block of ``block`` calls, per contender, round-robin with the order rotated each round."""
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            for _ in range(block):
                contenders[name]()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def vocode_contenders(run: Path, mel: torch.Tensor, bf16: bool) -> dict[str, Callable[[], object]]:
    generator, config = load_generator(run, "speech")  # as `mmgan vocode` does, then remove_weight_norm
    remove_weight_norm(generator)
    plain = {}
    for name, trunk in (("bare", True), ("melgan-paper", False)):
        net = remove_weight_norm(Generator(generator.trunk.config, config.ngf, trunk)).eval().requires_grad_(False)
        net.stem.load_state_dict(generator.stems["speech"].state_dict())
        net.head.load_state_dict(generator.heads["speech"].state_dict())
        if trunk:
            net.trunk.load_state_dict(generator.trunk.state_dict())
        plain[name] = net

    def mmgan_fn():
        with torch.inference_mode(), autocast(bf16):
            return vocode(generator, mel)

    def plain_fn(net):
        def fn():
            with torch.inference_mode(), autocast(bf16):
                return net(mel[None]).reshape(-1).float()
        return fn

    return {"mmgan": mmgan_fn, "bare": plain_fn(plain["bare"]), "melgan-paper": plain_fn(plain["melgan-paper"])}


def hinge_d(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake, strict=True)) / len(real)


def bare_train_fn(config, bf16: bool) -> Callable[[], None]:
    """MelGAN's training loop written out (with mmgan's loss weights); returns a one-step callable."""
    torch.manual_seed(SEED)
    m, t = config.modalities["speech"], config.train
    netG = Generator(config.trunk, m.ngf, trunk=True)
    netD = MultiScaleDiscriminator(ndf=m.ndf, max_channels=m.disc_channels)
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
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of audio to vocode (default 10)")
    parser.add_argument("--rounds", type=int, default=7, help="vocoding round-robin rounds (default 7)")
    parser.add_argument("--block", type=int, default=2, help="vocode calls per timed block (default 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed vocode calls per contender (default 1)")
    parser.add_argument("--batch", type=int, default=16, help="training batch size (default 16)")
    parser.add_argument("--segment", type=int, default=8192, help="training samples per clip (default 8192)")
    parser.add_argument("--train-rounds", type=int, default=3, help="training rounds, 0 skips part B (default 3)")
    parser.add_argument("--train-block", type=int, default=2, help="training steps per timed block (default 2)")
    parser.add_argument("--train-warmup", type=int, default=1, help="untimed steps per contender (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for every contender, both parts")
    parser.add_argument("--json", metavar="PATH", help="write the raw block timings here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    header = machine_header(args.threads)

    clip = SpeechLikeDataset(seed=1).clip(0, args.seconds).reshape(-1)
    clip = clip[: clip.shape[-1] // MEL.hop_length * MEL.hop_length]
    mel = mel_spectrogram(clip, MEL)
    audio_s = clip.shape[-1] / MEL.sample_rate
    print(f"A: {audio_s:.2f} s of audio ({mel.shape[-1]} frames), {args.rounds} rounds x {args.block} calls, "
          f"warmup {args.warmup}; B: batch {args.batch} x {args.segment} samples, {args.train_rounds} rounds x "
          f"{args.train_block} steps, warmup {args.train_warmup}; bf16={args.bf16}")

    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="mmgan-bench-") as tmp:
        trainer = None
        if args.train_rounds > 0 or args.run is None:
            overrides = [f"speech.segment_length={args.segment}",
                         f"train.mixed_precision={'bf16' if args.bf16 else 'no'}"]
            config = resolve(mmgan.plugins.get_modality, plugins=["speech"], out=os.path.join(tmp, "run"),
                             steps=10**6, batch_size=args.batch, seed=SEED, overrides=overrides)
            torch.manual_seed(SEED)
            trainer = Trainer(config, progress=False)
            if args.run is None:
                trainer.export()  # the untrained EMA generator, as a run's export/ holds it
        run = args.run or Path(tmp, "run")
        print(f"vocoder: {args.run or 'untrained default generator (no --run)'}")
        torch.set_num_threads(args.threads)  # in case anything above changed it
        contenders = vocode_contenders(run, mel, args.bf16)
        waves = {name: fn() for name, fn in contenders.items()}  # a check, and one more warm-up call each
        print("max |wave - bare wave|: " + ", ".join(f"{name} {(w - waves['bare']).abs().max().item():.2e}"
                                                  for name, w in waves.items() if name != "bare"))
        results["vocode"] = interleave(contenders, args.rounds, args.block, args.warmup)
        if args.train_rounds > 0:
            t = config.train
            print(f"train: lr_g {t.lr_g}, lr_d {t.lr_d}, betas ({t.beta1}, {t.beta2}), loss "
                  f"{config.modalities['speech'].loss or t.loss}")
            contenders = {"mmgan": trainer_step_fn(trainer), "bare": bare_train_fn(config, args.bf16)}
            torch.set_num_threads(args.threads)
            results["train"] = interleave(contenders, args.train_rounds, args.train_block, args.train_warmup)

    rtf = {name: [args.block * audio_s / s for s in blocks] for name, blocks in results["vocode"].items()}
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
