"""``mmgan check-plugin MODALITY``: what a plugin author wants to know before a long run.

Builds the modality's networks at the given config, checks that the generator's samples have the shape
of the real ones and that the discriminator reads both, writes samples through the plugin, trains one
step and checks that every parameter got a gradient, then trains a few more and warns about the silent
failures of a new modality: a discriminator whose loss stays at its value for D(x) = 0 (it learns
nothing), one whose loss falls to a tenth of its early level (or of that value) or less (it overpowers
the generator, which then collapses: lower its learning rate, add a gradient penalty or shrink it), and a
generator whose samples vary far less (under 0.5% of the std over a batch) than the real ones. Samples that
do not vary at all are an error.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mmgan import config as cfg
from mmgan.contract import calls
from mmgan.contract.manager import get_modality
from mmgan.engine import Trainer
from mmgan.losses import logits_of


@dataclass
class CheckReport:
    """What ``check_plugin`` found: passed checks, warnings and errors, one line each."""

    passed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return ([f"ok       {m}" for m in self.passed] + [f"warning  {m}" for m in self.warnings]
                + [f"error    {m}" for m in self.errors])


def _shape(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(x.shape[1:])


def check_plugin(modality: str, overrides: Sequence[str] = (), steps: int = 30, batch_size: int = 8,
                 workdir: Path | None = None) -> CheckReport:
    """Run the checks on ``modality`` (``overrides`` as ``--set``); ``steps`` training steps in all."""
    report = CheckReport()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        config = cfg.resolve(get_modality, plugins=[modality], out=Path(tmp) / "run", steps=steps,
                             batch_size=batch_size, overrides=["train.log_every=1", "train.eval_every=0",
                                                               *overrides])
        trainer = Trainer(config, progress=False)
        spec, mcfg = trainer.modalities[modality], config.modalities[modality]
        acc = trainer.accelerator
        batches = trainer.batches()
        real = next(batches[modality])
        report.passed.append(f"data {mcfg.data!r}: {len(trainer.datasets[modality])} samples of shape {_shape(real)}")
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            fake = trainer.G(modality, spec.make_input(real, mcfg, gen).to(real.device))
            if _shape(fake) != _shape(real):
                report.errors.append(f"generator makes samples of shape {_shape(fake)}, the data has {_shape(real)}")
                return report
            report.passed.append(f"generator: samples of shape {_shape(fake)}, as the data")
            try:
                for what, x in (("real", real), ("generated", fake)):
                    logits = logits_of(trainer.D_module(modality, x))
                    if any(t.shape[0] != x.shape[0] for t in logits):
                        report.errors.append(f"discriminator on a {what} batch of {x.shape[0]}: logits of shapes "
                                             f"{[tuple(t.shape) for t in logits]}, not one row per sample")
                        return report
            except TypeError as exc:
                report.errors.append(f"discriminator output: {exc}")
                return report
        report.passed.append(f"discriminator: {len(logits)} scale(s) of logits per sample")
        written = calls.write_samples(modality, fake.float().cpu(), Path(tmp) / "samples" / "check", mcfg, None,
                                      trainer.pm)
        if not written or not all(Path(p).is_file() for p in written):
            report.errors.append("write_samples wrote no file")
        else:
            report.passed.append(f"samples written: {', '.join(Path(p).name for p in written)}")
        # one step from the same batches the loop uses, then every parameter must have a gradient
        losses = [trainer.train_step(batches)]
        trainer.step += 1
        frozen = {id(p) for p in trainer.accelerator.unwrap_model(trainer.G).parameters() if not p.requires_grad}
        trained = [("generator", acc.unwrap_model(trainer.G))]
        if f"{modality}/d/adv" in losses[0]:  # D takes no step before its adversarial_start (warned about below)
            trained.append(("discriminator", trainer.D_module))
        for who, module in trained:
            # None: the parameter is not in the loss's graph (an unused layer); a zero gradient is allowed
            # (a zero-initialised output layer stops it reaching the layers before it in the first step)
            missing = [n for n, p in module.named_parameters()
                       if id(p) not in frozen and p.requires_grad and p.grad is None]
            if missing:
                report.errors.append(f"{who} parameters without a gradient after one step: {', '.join(missing[:5])}"
                                     + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""))
            else:
                report.passed.append(f"{who}: every trained parameter is in the loss's graph")
        for _ in range(steps - 1):
            losses.append(trainer.train_step(batches))
            trainer.step += 1
        _warn_about_training(report, trainer, modality, losses, real, mcfg, spec)
    return report


# D's loss falling to a tenth of its early level within the checked steps: D is overpowering G
OVERPOWERING_FALL = 10.0
# the generator's spread over a batch below this fraction of the real batch's: near-identical samples. Not
# higher: a young generator makes small outputs without collapsing (after 30 steps at tiny sizes, image's
# is at 7-10% of the data's spread, speech's MelGAN at 1-5%, its Vocos at 56%)
COLLAPSE_SPREAD = 0.005


def _edges(values: list[float]) -> tuple[float, float, int]:
    """The median of the first and of the last few values (a spike in one step moves neither), and how many."""
    k = max(1, min(5, len(values) // 5))
    return statistics.median(values[:k]), statistics.median(values[-k:]), k


def _spread(x: torch.Tensor) -> float:
    """The std over the batch, averaged over features (nan for a batch of one)."""
    return x.float().std(0).mean().item() if x.shape[0] > 1 else float("nan")


def _warn_about_training(report: CheckReport, trainer: Trainer, modality: str, losses: list[dict], real: torch.Tensor,
                         mcfg: object, spec: object) -> None:
    d_values = [float(step[f"{modality}/d/adv"]) for step in losses if f"{modality}/d/adv" in step]
    if not d_values:  # its warm-up (adversarial_start) lasts past the checked steps: D never trained
        report.warnings.append(f"the discriminator did not train in the {len(losses)} checked steps "
                               f"({modality}.adversarial_start = {getattr(mcfg, 'adversarial_start', 0)}); to check "
                               f"it, add --set {modality}.adversarial_start=0")
    elif not _check_discriminator(report, trainer, modality, d_values):
        return
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        fake = trainer.G(modality, spec.make_input(real, mcfg, gen).to(real.device)).float()
    spread, real_spread = _spread(fake), _spread(real)
    if not spread > 1e-6 and real_spread > 1e-6:  # every input gives the same sample: nothing to train
        report.errors.append(f"the generator's samples do not vary after {len(losses)} steps (std over the "
                             f"batch {spread:.2e}, the data's {real_spread:.3g}): it ignores its input or has "
                             "collapsed")
    elif spread < COLLAPSE_SPREAD * real_spread:
        report.warnings.append(f"the generator's samples vary far less than the data's after {len(losses)} steps "
                               f"(mean std over the batch {spread:.3g}, the data's {real_spread:.3g}): it barely "
                               f"depends on its input or is collapsing")
    else:
        report.passed.append(f"generator samples vary (mean std over the batch {spread:.3g})")

def _check_discriminator(report: CheckReport, trainer: Trainer, modality: str, d_values: list[float]) -> bool:
    """The D-loss checks; False when the loss is not finite (an error: nothing else is worth checking)."""
    if not all(math.isfinite(v) for v in d_values):
        report.errors.append(f"the discriminator's loss is not finite within {len(d_values)} steps")
        return False
    zeros = torch.zeros(4)
    chance = float(trainer.adversarial[modality].d_loss(zeros, zeros))
    tail = d_values[len(d_values) // 2:]
    early, late, k = _edges(d_values)
    if all(abs(v - chance) <= 0.01 * max(abs(chance), 1e-3) for v in tail):
        report.warnings.append(f"the discriminator's loss stayed at {chance:.4f}, its value for D(x) = 0, over the "
                               f"last {len(tail)} steps: it is not learning (does its output depend on its input?)")
    # a ratio of levels means something only for a loss positive at D(x) = 0 (hinge, non-saturating, least
    # squares: bounded below by 0); one that is 0 there (Wasserstein-like) can go negative and is not judged.
    # D starts near D(x) = 0, so a loss already far below that in the first steps has fallen too
    elif chance > 0 and late <= max(early, chance) / OVERPOWERING_FALL:
        report.warnings.append(f"the discriminator's loss fell from {early:.3f} to {late:.3f} within {len(d_values)} "
                               f"steps (medians of the first and last {k}; D(x) = 0 would give {chance:.3f}): D is "
                               f"overpowering G, which may collapse; try a lower {modality}.lr_d or train.lr_d, a "
                               f"gradient penalty (mmgan.api.r1_penalty) or a smaller D")
    else:
        report.passed.append(f"discriminator learns: loss {d_values[0]:.3f} -> {d_values[-1]:.3f} "
                             f"(D(x) = 0 would give {chance:.3f})")
    return True
