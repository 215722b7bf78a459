"""The ``speech`` modality: a GAN vocoder (log-mel in, waveform out) through mmgan's hooks: Vocos's frame-rate
generator on the shared trunk by default, MelGAN as the paper's network.

This module is imported whenever the CLI starts (``mmgan --help`` included), so it declares the modality
and imports torch, the mel, the networks, the data and the metrics inside the functions that use them.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

import mmgan
from mmgan.contract.modality import Modality, ModalityConfig, engine_default
from mmgan.contract.plugin import ModalityPlugin
from mmgan.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from mmgan.evaluation.scoring import EvalContext
    from mmgan.losses import LossContext
    from mmgan.report.section import ReportContext, ReportSection
    from mmgan_speech.shards import SpeechCodec


class _ImportedOnUse:
    """``module.name``, imported when first read: ``MEL.hop_length`` or ``for ... in STFT_RESOLUTIONS``
    work as on the value itself, ``.get()`` is the value. The mel and loss modules import torch, which
    loading this module must not."""

    def __init__(self, module: str, name: str) -> None:
        self._module, self._name = module, name

    def get(self) -> Any:
        return getattr(importlib.import_module(self._module), self._name)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):  # copy and pickle probe for these before __init__ ran
            raise AttributeError(attr)
        return getattr(self.get(), attr)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.get())


NAME = "speech"
# the shared trunk's blocks a speech run builds (Modality.trunk_defaults): Vocos's backbone is 8 blocks
TRUNK_DEPTH = 8
# the default run's steps: the reconstruction warm-up (SpeechConfig.adversarial_start), then GAN steps
DEFAULT_STEPS = 3750
# the generators ``speech.generator`` names (``networks`` for melgan, ``vocos`` for vocos)
GENERATORS = ("melgan", "vocos")
# the one mel definition (``mmgan_speech.mel.MelConfig()``, as the losses use it)
MEL = _ImportedOnUse("mmgan_speech.losses", "MEL")
STFT_RESOLUTIONS = _ImportedOnUse("mmgan_speech.losses", "STFT_RESOLUTIONS")


@dataclass
class SpeechConfig(ModalityConfig):
    """Vocos (Siuzdak 2023) on the shared trunk with HiFi-GAN's multi-period and a multi-resolution STFT
    discriminator, hinge loss, feature matching and HiFi-GAN's mel loss (weight 45); ``generator = "melgan"``
    trains MelGAN (Kumar et al. 2019) with its multi-scale discriminator instead (docs/speech.md).

    Feature matching is the mean L1 over all (discriminator, layer) pairs with weight 10; MelGAN's own code
    weights each layer 0.8/3, i.e. 1.6x this mean (see ``networks.feature_matching_loss``).
    """

    # builtin:speech, a folder of WAV files, an LJSpeech root, or WebDataset shards
    data: str = engine_default("builtin:speech")
    # MelGAN's hinge loss
    loss: str = engine_default("hinge")
    # training segment in samples: a multiple of the hop (256), 1024 to 1048576 (47 s)
    segment_length: int = 8192
    # MelGAN head channels: ngf * 8, 4, 2, 1 after its four upsamplings; 1 to 1024
    ngf: int = 32
    # MelGAN discriminator channels of the first layer; 1 to 1024
    ndf: int = 16
    # the most channels a discriminator layer has; 1 to 16384
    disc_channels: int = 1024
    # the generator: "melgan" (Kumar et al. 2019: upsampling convolutions at the sample rate) or "vocos"
    # (Siuzdak 2023: everything at the frame rate, then an inverse STFT; docs/speech.md)
    generator: str = "vocos"
    # the discriminators, "+"-joined: msd (MelGAN's multi-scale), mpd (HiFi-GAN's multi-period), mrd
    # (multi-resolution STFT); "" = the generator's own (melgan: msd; vocos: mpd+mrd)
    discriminator: str = ""
    # multi-period discriminator widths: this, x4, x16, x32, x32, each at most disc_channels (HiFi-GAN: 32;
    # 8 on a CPU, where 32 makes a step many times dearer: docs/experiments/speech-vocoder.md#vocos-vs-melgan-speed);
    # 1 to 1024
    mpd_channels: int = 8
    # channels of every layer of the multi-resolution STFT discriminator (UnivNet: 32; 8 on a CPU); 1 to 1024
    mrd_channels: int = 8
    # weight of the feature-matching L1 (mean over scales and layers)
    feature_matching_weight: float = 10.0
    # weight of the log-mel L1 reconstruction loss (HiFi-GAN: 45)
    mel_weight: float = 45.0
    # weight of the multi-resolution STFT loss (0: off; 5 scored better than 0 on every measure after the
    # warm-up, at one seed, when vocos became the default)
    stft_weight: float = 5.0
    # vocos: the head's phase is added to each bin's centre-frequency advance since the first frame
    # (vocos.ISTFTHead), so a steady partial needs no clock the network does not have (runs written
    # before the key: false; with magnitude_prior the default since it won at 3 seeds on 2 sets:
    # docs/experiments/speech-vocoder.md#phase-and-magnitude-priors-for-the-vocos-head)
    phase_advance: bool = True
    # vocos: the head's log-magnitude is added to the input mel's least-squares magnitude (the mel
    # filterbank's pseudo-inverse), so the network learns only what the mel cannot say (runs written
    # before the key: false)
    magnitude_prior: bool = True
    # vocos: fast Griffin-Lim projections of the head's spectrum, from its phase, before the inverse STFT, in
    # evaluation and vocoding (vocos.project_phase; `mmgan vocode --phase-iterations` overrides it); 0: none.
    # Each costs an STFT and an inverse STFT, so vocoding slows with their number
    # (docs/benchmarks.md#vocoding-real-time-factors). With 16 the default run beats Griffin-Lim on MCD, PESQ
    # and STOI at 3 seeds on both held-out sets (docs/benchmarks.md#speech-quality-the-default-against-griffin-lim);
    # 32 scores better still but vocodes below the 40x real-time goal (runs written before the key: 0)
    phase_iterations: int = 16
    # vocos: the projections in a training step, trained through (-1: phase_iterations); 8 is what the
    # default was measured with (what a step through them costs: docs/benchmarks.md#training-throughput)
    train_phase_iterations: int = 8
    # vocos: the training step from which they run; before it the head trains without them (trained through
    # them from step 0 it learnt less fine structure:
    # docs/experiments/speech-vocoder.md#phase-projections-in-the-head-the-default-beats-griffin-lim)
    phase_iterations_start: int = 3000
    # weight of the phase-derivative loss (losses.phase_derivative_loss: the phase's steps along time and
    # frequency against the real wave's; 0: off); a reconstruction term, so it trains in the warm-up too
    phase_weight: float = 0.0
    # clips shorter than a segment: "pad" with silence or "skip"
    short_clips: str = "pad"
    # the first steps train the generator on its reconstruction terms alone (mel, MR-STFT), at a fraction of
    # a GAN step's cost (docs/benchmarks.md#training-throughput); then the discriminators join (as Parallel
    # WaveGAN and multi-band MelGAN start D late). Measured: per CPU-minute, and even per step, reconstruction
    # steps improved every held-out measure faster than the first GAN steps did
    # (docs/experiments/speech-gan-phase.md#the-learning-curve-warm-up-against-gan-steps-the-first-27-cpu-minutes),
    # so the default run is mostly warm-up
    adversarial_start: int = engine_default(3500)
    # the held-out measure that picks the best export (mmgan vocode/eval use it; --last for the last step)
    select_by: str = engine_default("mcd_db")

    def validate(self) -> None:
        if not 4 * MEL.hop_length <= self.segment_length <= 2**20 or self.segment_length % MEL.hop_length:
            raise ValueError(f"segment_length must be a multiple of {MEL.hop_length} between "
                             f"{4 * MEL.hop_length} and {2**20}, got {self.segment_length}")
        # generous ranges that only stop sizes no network could be built from; mmgan.config.sizes checks the memory
        for name, high in (("ngf", 1024), ("ndf", 1024), ("disc_channels", 16384)):
            if not 1 <= getattr(self, name) <= high:
                raise ValueError(f"{name} must be between 1 and {high}, got {getattr(self, name)}")
        for name in ("feature_matching_weight", "mel_weight", "stft_weight", "phase_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        longest = max(n_fft for n_fft, _, _ in STFT_RESOLUTIONS)
        if self.stft_weight and self.segment_length <= longest // 2:
            raise ValueError(f"stft_weight > 0 needs segment_length above {longest // 2} (the largest STFT "
                             f"resolution's padding), got {self.segment_length}")
        if self.short_clips not in ("pad", "skip"):
            raise ValueError(f"short_clips must be pad or skip, got {self.short_clips!r}")
        if self.generator not in GENERATORS:
            raise ValueError(f"generator must be {' or '.join(GENERATORS)}, got {self.generator!r}")
        parts = self.discriminators.split("+")
        if any(p not in ("msd", "mpd", "mrd") for p in parts) or len(set(parts)) != len(parts):
            raise ValueError(f"discriminator must be msd, mpd, mrd or several of them joined by '+' (each once), "
                             f"or \"\" for the generator's own, got {self.discriminator!r}")
        if not 0 <= self.phase_iterations <= 256:
            raise ValueError(f"phase_iterations must be between 0 and 256, got {self.phase_iterations}")
        if not -1 <= self.train_phase_iterations <= 256:
            raise ValueError(f"train_phase_iterations must be -1 (as phase_iterations) or between 0 and 256, got "
                             f"{self.train_phase_iterations}")
        if self.phase_iterations_start < 0:
            raise ValueError(f"phase_iterations_start must be >= 0, got {self.phase_iterations_start}")
        for name in ("mpd_channels", "mrd_channels"):
            if not 1 <= getattr(self, name) <= 1024:
                raise ValueError(f"{name} must be between 1 and 1024, got {getattr(self, name)}")

    @property
    def discriminators(self) -> str:
        """The discriminator to build: ``discriminator``, or the generator's own where it is empty."""
        return self.discriminator or {"melgan": "msd", "vocos": "mpd+mrd"}.get(self.generator, "msd")


def log_mel(real: torch.Tensor, config: SpeechConfig, generator: torch.Generator) -> torch.Tensor:
    """The generator's input: the log-mel (B, 80, frames) of the real waveforms (B, 1, T)."""
    from mmgan_speech.mel import mel_spectrogram

    return mel_spectrogram(real.reshape(real.shape[0], -1).float(), MEL.get())


class SpeechPlugin(ModalityPlugin):
    """The vocoder declared once: mmgan asks this object for the ``speech`` modality's parts."""

    modality = Modality(
        name=NAME,
        config_class=SpeechConfig,
        make_input=log_mel,
        sample_input=None,  # conditional: `mmgan vocode` gives it a wav or a mel
        description="GAN vocoder, Vocos (Siuzdak 2023) or MelGAN: 22.05 kHz log-mel in, waveform out",
        # tiny networks for tests (mmgan.testing.tiny_run), adversarial from the first step
        test_settings=("speech.segment_length=2048", "speech.mpd_channels=2", "speech.mrd_channels=2",
                       "speech.adversarial_start=0"),
        # held-out clips per evaluation: on a CPU each 4-s clip is vocoded and scored, far dearer than an
        # image sample (docs/metrics.md#speech-metrics)
        eval_samples=32,
        # Vocos's optimiser (Adam 5e-4, betas 0.8/0.9) and batch; the steps fit the 20-minute goal for the
        # default run on 2 CPU cores (its time: docs/benchmarks.md#training-throughput; a reconstruction
        # warm-up of speech.adversarial_start cheap steps, then the GAN), with a held-out evaluation every 500
        # steps that keeps the best export by MCD
        train_defaults={"batch_size": 16, "lr_g": 5e-4, "lr_d": 5e-4, "beta1": 0.8, "beta2": 0.9,
                        "steps": DEFAULT_STEPS, "sample_every": 500, "checkpoint_every": 500, "eval_every": 500,
                        "eval_samples": 16},
        trunk_defaults={"depth": TRUNK_DEPTH},
        # runs and exports written before speech.generator existed were MelGANs
        legacy_values={"generator": "melgan", "phase_advance": False, "magnitude_prior": False,
                       "phase_iterations": 0, "train_phase_iterations": -1,
                       "phase_iterations_start": 0},
    )
    metric_goals = {"mel_l1": "min", "mrstft": "min", "mcd_db": "min", "pesq_wb": "max", "stoi": "max"}
    # an ONNX export takes mels of any length (B, n_mels, frames)
    onnx_axes = {2: "frames"}
    # vocos's DFTs by matrix (ONNX has no FFT of complex numbers) round more than FFTs, and the 16 phase
    # projections carry the rounding on: measured up to 2.2e-4 (docs/deploy.md)
    onnx_tolerance = 1e-3

    def onnx_module(self, generator: nn.Module, config: SpeechConfig) -> nn.Module | None:
        """Vocos: the generator with its head's FFTs as convolutions with DFT bases (ONNX has no complex
        numbers); MelGAN exports as it is."""
        if config.generator != "vocos":
            return None
        from mmgan_speech.vocos_onnx import onnx_vocos

        return onnx_vocos(generator, NAME)

    def onnx_metadata(self, config: SpeechConfig) -> dict[str, Any]:
        """The mel the vocoder takes (log of mel magnitudes, natural log clamped at ``log_clamp``), and its rate."""
        from dataclasses import asdict

        from mmgan_speech.losses import MEL as mel

        return {"sample_rate": mel.sample_rate, "mel": asdict(mel), "samples_per_frame": mel.hop_length}

    def build_generator(self, config: SpeechConfig, width: int) -> tuple[nn.Module, nn.Module]:
        if config.generator == "vocos":
            from mmgan_speech.vocos import ISTFTHead, VocosStem

            return VocosStem(MEL.n_mels, width), ISTFTHead(width, MEL.get(), phase_advance=config.phase_advance,
                                                           magnitude_prior=config.magnitude_prior,
                                                           phase_iterations=config.phase_iterations,
                                                           train_phase_iterations=config.train_phase_iterations,
                                                           phase_iterations_start=config.phase_iterations_start)
        from mmgan_speech.networks import MelGANHead, MelStem

        return MelStem(MEL.n_mels, width), MelGANHead(width, ngf=config.ngf)

    def build_discriminator(self, config: SpeechConfig) -> nn.Module:
        from mmgan_speech.discriminators import build_discriminators

        try:
            return build_discriminators(config.discriminators, ndf=config.ndf, max_channels=config.disc_channels,
                                        mpd_channels=config.mpd_channels, mrd_channels=config.mrd_channels)
        except ValueError as exc:  # channel counts that the MSD's grouped convolutions cannot split
            raise ConfigError(f"[speech] ndf={config.ndf}, disc_channels={config.disc_channels}: {exc}") from None

    def read_data(self, source: str, config: SpeechConfig, seed: int) -> torch.utils.data.Dataset:
        from mmgan_speech.datasets import open_speech_source

        return open_speech_source(source, config.segment_length, MEL.sample_rate, seed, config.short_clips)

    def shard_codec(self, config: SpeechConfig) -> SpeechCodec:
        from mmgan_speech.shards import SpeechCodec

        return SpeechCodec(config.segment_length, MEL.sample_rate, config.short_clips)

    def generator_loss_terms(self, ctx: LossContext) -> dict[str, torch.Tensor]:
        from mmgan_speech.losses import mel_l1, multi_resolution_stft, phase_derivative_loss
        from mmgan_speech.networks import feature_matching_loss

        cfg: SpeechConfig = ctx.config
        terms = {}
        if cfg.feature_matching_weight and ctx.adversarial:  # no D before speech.adversarial_start
            terms["fm"] = cfg.feature_matching_weight * feature_matching_loss(ctx.d_real, ctx.d_fake)
        if cfg.mel_weight:
            terms["mel"] = cfg.mel_weight * mel_l1(ctx.fake, ctx.real, MEL.get())
        if cfg.stft_weight:
            terms["stft"] = cfg.stft_weight * multi_resolution_stft(ctx.fake, ctx.real)
        if cfg.phase_weight:
            terms["phase"] = cfg.phase_weight * phase_derivative_loss(ctx.fake, ctx.real, MEL.get())
        return terms

    def write_samples(self, samples: torch.Tensor, path: Path, config: SpeechConfig,
                      real: torch.Tensor | None) -> list[Path]:
        from mmgan_speech.samples import write_speech_samples

        return write_speech_samples(samples, Path(path), real, config=MEL.get())

    def write_interpolation(self, paths: torch.Tensor, path: Path, config: SpeechConfig) -> list[Path]:
        """Per path ``<path>_<row>.wav`` (its clips from one end to the other, with short gaps) and ``.png``
        (their log-mels, one per line)."""
        from mmgan_speech.samples import write_speech_samples

        files = []
        for row, clips in enumerate(paths):
            files += write_speech_samples(clips, Path(f"{path}_{row}"), None, count=len(clips), config=MEL.get())
        return files

    def features(self, samples: torch.Tensor, config: SpeechConfig) -> torch.Tensor:
        """Waves (N, 1, T) -> each log-mel band's mean and standard deviation over time (2 x n_mels values):
        what was said and how it sounds, for the collapse watchdog's spread and the memorisation check."""
        import torch

        from mmgan_speech.mel import mel_spectrogram

        mel = mel_spectrogram(samples.float().reshape(samples.shape[0], -1), MEL.get())
        return torch.cat([mel.mean(dim=-1), mel.std(dim=-1)], dim=1)

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        """Copy synthesis of ``ctx.num_samples`` held-out clips of ``ctx.data``: mel_l1, mrstft, mcd_db, and
        pesq_wb and stoi with the ``audio-metrics`` extra (``mmgan_speech.metrics``)."""
        from mmgan_speech.metrics import HELD_OUT_SECONDS, evaluate_vocoder
        from mmgan_speech.vocode import DEFAULT_OVERLAP, context_frames, vocode

        def step(modality: str, mel: torch.Tensor) -> torch.Tensor:
            return ctx.generator(mel.to(ctx.device)).float().cpu()

        # the generator's own reach where it can be read (a GeneratorSet inside the ModalityGenerator)
        generators = getattr(ctx.generator, "generators", None)
        try:
            overlap = context_frames(generators, ctx.modality.name) if generators is not None else DEFAULT_OVERLAP
        except (AttributeError, ValueError):
            overlap = DEFAULT_OVERLAP

        def vocoder(mel: torch.Tensor) -> torch.Tensor:
            return vocode(step, mel, overlap=overlap)  # chunked as `mmgan vocode`: memory bounded on long clips

        seconds = float(ctx.options.get("speech_clip_seconds", HELD_OUT_SECONDS))
        return evaluate_vocoder(vocoder, ctx.data, ctx.num_samples, ctx.seed, MEL.get(), seconds)

    def report_section(self, ctx: ReportContext) -> ReportSection | None:
        """Real and generated clips of each sample step, with their log-mels (``mmgan_speech.report``)."""
        from mmgan_speech.report import speech_report_section

        return speech_report_section(ctx)

    @mmgan.hookimpl
    def mmgan_register_commands(self, cli: click.Group) -> None:
        from mmgan_speech.commands import register_vocode_command

        register_vocode_command(cli)


# the object the ``speech`` entry point names
plugin = SpeechPlugin()
