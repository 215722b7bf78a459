"""The vocos generator (a frame-rate network and an inverse STFT of the plugin's own framing) and the
multi-period / multi-resolution STFT discriminators: shapes, exact lengths, perfect reconstruction, the
loss plumbing, and a tiny run through the CLI that trains, exports and vocodes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY_CORE, assert_one_line_error, read_metrics

from mmgan.config import legacy_modality_values, section_from_dict
from mmgan.config.sizes import build_on_meta
from mmgan.evaluation.inference import load_generator
from mmgan.losses import HingeLoss, logits_of
from mmgan.trunk import GeneratorSet, LatentTrunk, TrunkConfig
from mmgan_speech.audio import read_wav, write_wav
from mmgan_speech.discriminators import (
    CombinedDiscriminator,
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    build_discriminators,
    mpd_widths,
)
from mmgan_speech.mel import MelConfig, mel_filterbank, mel_spectrogram
from mmgan_speech.networks import DiscriminatorOutput, MultiScaleDiscriminator, feature_matching_loss
from mmgan_speech.plugin import SpeechConfig, plugin
from mmgan_speech.speech_like import SpeechLikeDataset
from mmgan_speech.vocode import context_frames, read_mel_input, vocode
from mmgan_speech.vocos import InverseSTFT, ISTFTHead, VocosStem, frame_spectrum, project_phase

# the vocos networks narrowed for a CPU test: 2048-sample segments = 8 mel frames
# (D from the first step: the default's reconstruction warm-up would outlast a test run)
VOCOS_TINY = ["speech.generator=vocos", "speech.segment_length=2048", "speech.mpd_channels=4",
              "speech.mrd_channels=4", "speech.disc_channels=32", "speech.adversarial_start=0"]
HOP = MelConfig().hop_length


def vocos_args(out, steps=3, batch_size=2, extra=()):
    args = ["run", "--plugin", "speech", "--out", str(out), "--steps", str(steps), "--batch-size", str(batch_size),
            "--no-progress"]
    for item in (*TINY_CORE, *VOCOS_TINY, *extra):
        args += ["--set", item]
    return args


# ---- the generator's parts -------------------------------------------------------------------------

@pytest.mark.parametrize("frames", [1, 2, 7, 32])
def test_stem_and_head_keep_frames_and_make_exactly_frames_times_hop_samples(frames):
    stem, head = VocosStem(80, 16), ISTFTHead(16)
    tokens = stem(torch.randn(3, 80, frames) - 5)
    assert tokens.shape == (3, 16, frames)
    assert head(tokens).shape == (3, 1, frames * HOP)
    assert head.to_spectrum.out_features == 1024 + 2  # n_fft + 2: log-magnitude and phase of 513 bins


def test_the_overlap_add_inverts_the_plugin_framing():
    torch.manual_seed(0)
    wave = torch.rand(3, 37 * HOP) * 2 - 1
    spectrum = frame_spectrum(wave)
    assert spectrum.shape == (3, 513, 37)
    # the framing is the mel's: its magnitude through the filterbank is the plugin's log-mel
    from mmgan_speech.mel import mel_filterbank

    magnitude = (spectrum.abs().square() + 1e-9).sqrt()
    assert torch.allclose((mel_filterbank() @ magnitude).clamp_min(1e-5).log(), mel_spectrogram(wave), atol=1e-4)
    assert torch.allclose(InverseSTFT()(spectrum), wave, atol=1e-5)
    # T not a multiple of the hop: T // hop frames give back the first frames * hop samples
    odd = torch.rand(2, 10 * HOP + 100) * 2 - 1
    assert torch.allclose(InverseSTFT()(frame_spectrum(odd)), odd[:, : 10 * HOP], atol=1e-5)


@pytest.mark.parametrize("hop", [256, 300])
def test_the_overlap_add_is_fold_s_sum_whether_or_not_the_hop_divides_n_fft(hop):
    torch.manual_seed(5)
    inverse = InverseSTFT()
    inverse.hop_length = hop  # 300: not a whole number of hops in 1024, the general path
    pieces = torch.randn(2, 1024, 9)
    length = 8 * hop + 1024
    folded = torch.nn.functional.fold(pieces, (1, length), (1, 1024), stride=(1, hop)).reshape(2, length)
    assert torch.allclose(inverse.overlap_add(pieces), folded, atol=1e-5)


def test_the_head_is_an_exact_inverse_stft_of_what_its_linear_layer_predicts():
    torch.manual_seed(1)
    wave = torch.rand(1, 12 * HOP) * 2 - 1
    spectrum = frame_spectrum(wave)
    head = ISTFTHead(16)
    # read the head's numbers back from the spectrum: log-magnitude and angle, bypassing norm and linear
    predicted = torch.cat([spectrum.abs().clamp_min(1e-12).log(), spectrum.angle()], dim=1)
    head.to_spectrum.forward = lambda x: predicted.transpose(1, 2)
    assert torch.allclose(head(torch.randn(1, 16, 12)).reshape(1, -1), wave, atol=1e-4)


def test_the_head_clips_the_magnitude_and_runs_its_fft_in_float32_under_bf16():
    head = ISTFTHead(8)
    torch.nn.init.constant_(head.to_spectrum.bias, 1e4)  # exp(1e4) would be inf without the clip
    assert torch.isfinite(head(torch.randn(1, 8, 4))).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ISTFTHead(8)(torch.randn(1, 8, 4)).dtype == torch.float32


@pytest.mark.parametrize("advance", [False, True])
def test_a_phase_advancing_head_makes_a_steady_partial_from_a_constant_output(advance):
    # the linear layer predicts the same numbers at every frame: all energy in bin 5 (not a multiple of 4),
    # phase 0. With the advance the head plays bin 5's centre frequency; without it every frame is the
    # same, so the wave repeats every hop, and the partial lands on a multiple of sample_rate / hop.
    head = ISTFTHead(8, phase_advance=advance)
    torch.nn.init.zeros_(head.to_spectrum.weight)
    with torch.no_grad():
        head.to_spectrum.bias.fill_(-30.0)
        head.to_spectrum.bias[5] = 0.0
        head.to_spectrum.bias[head.bins:] = 0.0
    wave = head(torch.randn(1, 8, 64))[0, 0, 8 * HOP : 56 * HOP]
    spectrum = torch.fft.rfft(wave * torch.hann_window(wave.numel()))
    peak = float(torch.fft.rfftfreq(wave.numel(), 1 / 22050)[spectrum.abs().argmax()])
    centre = 5 * 22050 / 1024
    if advance:
        assert abs(peak - centre) < 3, peak
    else:
        assert abs(peak - centre) > 20 and min(abs(peak - m * 22050 / HOP) for m in range(3)) < 3, peak
        assert torch.allclose(wave[HOP:], wave[:-HOP], atol=1e-5)


def test_the_magnitude_prior_is_the_mel_s_least_squares_magnitude_and_reaches_the_head_around_the_trunk():
    wave = SpeechLikeDataset(seed=2).clip(0, 1.0).float()[:, : 80 * HOP]
    mel = mel_spectrogram(wave)
    head = ISTFTHead(8, magnitude_prior=True)
    prior = head.prior(mel)
    basis = mel_filterbank()
    assert (torch.log((basis @ prior.exp()).clamp_min(1e-5)) - mel).abs().mean() < 0.05
    # the magnitude half starts at zero (a fresh head plays the prior), and GeneratorSet hands the head the
    # generator's input around the trunk
    assert not head.to_spectrum.weight[: head.bins].any() and not head.to_spectrum.bias[: head.bins].any()
    seen = []
    head.prior = lambda given: seen.append(given) or prior
    trunk = LatentTrunk(TrunkConfig(width=8, depth=1), ["speech"])
    generator = GeneratorSet(trunk, {"speech": (VocosStem(80, 8), head)})
    assert generator("speech", mel).shape == (1, 1, 80 * HOP)
    assert len(seen) == 1 and torch.equal(seen[0], mel)
    with pytest.raises(ValueError, match="needs the mel"):
        head(torch.randn(1, 8, 4))


def test_phase_projections_move_a_random_phase_towards_a_consistent_spectrum_and_pass_gradients():
    torch.manual_seed(4)
    wave = SpeechLikeDataset(seed=3).clip(0, 1.0).float()[:, : 60 * HOP]
    magnitude = frame_spectrum(wave).abs().requires_grad_()
    phase = 2 * torch.pi * torch.rand(magnitude.shape)
    istft = InverseSTFT()

    def inconsistency(iterations: int) -> torch.Tensor:  # how far the wave's own magnitude is from the target
        made = istft(project_phase(magnitude, phase, iterations, istft))
        return (frame_spectrum(made).abs() - magnitude).abs().mean() / magnitude.mean()

    errors = [float(inconsistency(n).detach()) for n in (0, 4, 16)]
    assert errors[0] > 0.4 and errors[1] < 0.5 * errors[0] and errors[2] < 0.6 * errors[1], errors
    inconsistency(8).backward()
    assert magnitude.grad is not None and torch.isfinite(magnitude.grad).all() and magnitude.grad.abs().sum() > 0
    # no iterations: the head's spectrum as it was (polar form of the predicted phase)
    assert torch.allclose(project_phase(magnitude, phase, 0, istft), torch.polar(magnitude, phase))
    with pytest.raises(ValueError, match="phase_iterations"):
        ISTFTHead(8, phase_iterations=-1)


@pytest.mark.parametrize(("prior", "iterations"), [(False, 0), (True, 0), (True, 3)])
def test_a_phase_advancing_head_vocodes_in_chunks_as_whole(prior, iterations):
    torch.manual_seed(3)
    stem = VocosStem(80, 16)
    head = ISTFTHead(16, phase_advance=True, magnitude_prior=prior, phase_iterations=iterations)
    generator = GeneratorSet(LatentTrunk(TrunkConfig(width=16, depth=2), ["speech"]), {"speech": (stem, head)})
    # the receptive field: stem 3 + 2 blocks x 1 + inverse STFT 2, plus 3 frames per projection
    assert context_frames(generator) == 7 + 3 * iterations
    with torch.no_grad():
        for p in generator.parameters():
            p.add_(0.1 * torch.randn_like(p))  # gates and zero-initialised layers off zero
    mel = torch.randn(80, 203) - 5
    whole = vocode(generator, mel, chunk_frames=10_000)
    for chunk in (5, 7, 64, 202):  # chunks rounded up to a multiple of the 4-frame phase period
        assert torch.allclose(vocode(generator, mel, chunk_frames=chunk), whole, atol=1e-5), chunk
    for overlap in (9, 10):  # past the receptive field but not a multiple of 4: rounded up too
        overlap += 3 * iterations
        assert torch.allclose(vocode(generator, mel, chunk_frames=64, overlap=overlap), whole, atol=1e-5), overlap
    if iterations:  # an overlap short of the projections' reach is not enough: what the reach is for
        short = vocode(generator, mel, chunk_frames=64, overlap=8)
        assert not torch.allclose(short, whole, atol=1e-5)


def test_vocos_generator_goes_through_the_trunk_and_builds_on_meta():
    config = SpeechConfig(generator="vocos")
    stem, head = plugin.build_generator(config, 32)
    assert isinstance(stem, VocosStem) and isinstance(head, ISTFTHead)
    generator = GeneratorSet(LatentTrunk(TrunkConfig(width=32, depth=2), ["speech"]), {"speech": (stem, head)})
    fake = generator("speech", torch.randn(2, 80, 9) - 5)
    assert fake.shape == (2, 1, 9 * HOP)
    fake.square().mean().backward()
    assert all(p.grad is not None for p in generator.trunk.blocks.parameters())
    # mmgan.config.sizes builds networks on the meta device: windows made with torch ops build there too
    on_meta = build_on_meta(lambda: (plugin.build_generator(config, 512), plugin.build_discriminator(config)))
    assert on_meta is not None
    assert on_meta[0][1].istft.window.is_meta and on_meta[1].discriminators["mrd"].discriminators[0].window.is_meta
    # the window is not a weight: exports never carry it
    assert "istft.window" not in head.state_dict()


# ---- the discriminators ------------------------------------------------------------------------------

def test_mpd_and_mrd_return_logits_and_features_as_the_msd_does():
    wave = torch.randn(2, 1, 2048) * 0.3
    mpd = MultiPeriodDiscriminator(channels=4, max_channels=32)
    out = mpd(wave)
    assert isinstance(out, DiscriminatorOutput) and len(out.logits) == len(out.features) == 5
    for p, logits, features in zip((2, 3, 5, 7, 11), out.logits, out.features, strict=True):
        assert logits.shape[:2] == (2, p) and len(features) == 5
        assert [f.shape[1] for f in features] == [p * w for w in mpd_widths(4, 32)]
    assert mpd_widths(32) == [32, 128, 512, 1024, 1024]  # HiFi-GAN's
    mrd = MultiResolutionDiscriminator(channels=4)
    out = mrd(wave.reshape(2, -1))  # (B, T) works as for the MSD
    assert len(out.logits) == 3 and all(len(f) == 5 for f in out.features)
    assert [tuple(logits.shape[:2]) for logits in out.logits] == [(2, 1)] * 3
    # a wave shorter than the largest FFT still works (reflection padding that reflects back and forth)
    assert len(mrd(torch.randn(1, 1, 600)).logits) == 3


def test_combined_discriminators_fit_the_adversarial_and_feature_matching_losses():
    torch.manual_seed(0)
    d = build_discriminators("mpd+mrd", max_channels=32, mpd_channels=4, mrd_channels=4)
    assert isinstance(d, CombinedDiscriminator) and list(d.discriminators) == ["mpd", "mrd"]
    fake = (torch.randn(2, 1, 2048) * 0.3).requires_grad_(True)
    real = torch.randn(2, 1, 2048) * 0.3
    d_fake, d_real = d(fake), d(real)
    assert len(logits_of(d_fake)) == 8 and len(d_fake.features) == 8
    loss = HingeLoss().g_loss(d_fake) + feature_matching_loss(d_real, d_fake) + HingeLoss().d_loss(d_real, d_fake)
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is not None for p in d.parameters())
    assert isinstance(build_discriminators("msd", ndf=4, max_channels=32), MultiScaleDiscriminator)
    assert list(build_discriminators("mrd+msd", ndf=4, max_channels=32, mrd_channels=4).discriminators) == \
        ["mrd", "msd"]


def test_each_generator_gets_its_own_discriminator_unless_one_is_named():
    assert SpeechConfig().generator == "vocos"  # the default since issue 10 (docs/benchmarks.md)
    assert SpeechConfig().discriminators == "mpd+mrd"
    assert SpeechConfig(generator="melgan").discriminators == "msd"
    assert SpeechConfig(generator="vocos", discriminator="msd").discriminators == "msd"
    # an export written before the key existed has no `generator`: it loads as the melgan it was
    old = {"ngf": 4, **legacy_modality_values({"ngf": 4}, plugin.modality)}
    assert section_from_dict(SpeechConfig, old, "old.json").generator == "melgan"
    assert legacy_modality_values({"generator": "vocos"}, plugin.modality).get("generator") is None
    # runs and exports written before speech.phase_advance existed had no advance
    assert legacy_modality_values({"generator": "vocos"}, plugin.modality)["phase_advance"] is False
    assert legacy_modality_values({"generator": "vocos"}, plugin.modality)["magnitude_prior"] is False
    # and no phase projections (the default since they beat Griffin-Lim at 3 seeds): they vocode as they did
    legacy = legacy_modality_values({"generator": "vocos"}, plugin.modality)
    keys = ("phase_iterations", "train_phase_iterations", "phase_iterations_start")
    assert tuple(legacy[key] for key in keys) == (0, -1, 0)
    assert SpeechConfig().phase_iterations == 16 and SpeechConfig().train_phase_iterations == 8


# ---- through the CLI ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vocos_run(tmp_path_factory):
    from click.testing import CliRunner

    from mmgan.cli.commands import build_cli

    run = tmp_path_factory.mktemp("vocos") / "run"
    result = CliRunner().invoke(build_cli(), vocos_args(run, extra=["train.sample_every=3", "speech.stft_weight=1"]),
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return run


def test_a_vocos_run_trains_exports_and_vocodes(vocos_run, tmp_path, cli_run):
    record = read_metrics(vocos_run)[-1]
    for key in ("speech/d/adv", "speech/g/adv", "speech/g/fm", "speech/g/mel", "speech/g/stft"):
        assert np.isfinite(record[key]), (key, record)
    assert (vocos_run / "samples" / "speech" / "step_000003.wav").is_file()
    exported = json.loads((vocos_run / "export" / "speech.json").read_text())
    assert exported["config"]["generator"] == "vocos"
    generator, config = load_generator(vocos_run, "speech")
    assert config.generator == "vocos" and isinstance(generator.heads["speech"], ISTFTHead)

    wave = 0.5 * np.sin(2 * np.pi * 220 * np.arange(HOP * 40) / 22050).astype(np.float32)
    write_wav(tmp_path / "in.wav", wave, 22050)
    result = cli_run("vocode", vocos_run, tmp_path / "in.wav", "-o", tmp_path / "out.wav")
    assert result.exit_code == 0, result.output
    assert len(read_wav(tmp_path / "out.wav")) == HOP * 40
    np.save(tmp_path / "mel.npy", read_mel_input(tmp_path / "in.wav").numpy())  # the mel of the 16-bit file
    result = cli_run("vocode", vocos_run, tmp_path / "mel.npy", "-o", tmp_path / "out2.wav", "--chunk-frames", "7")
    assert result.exit_code == 0, result.output
    assert np.allclose(read_wav(tmp_path / "out2.wav"), read_wav(tmp_path / "out.wav"), atol=2e-4)
    # speech is conditional: `mmgan generate` refuses it in one line, as for melgan
    assert_one_line_error(cli_run("generate", vocos_run, "-n", "2", "-o", tmp_path / "g.wav"), "conditional")


def test_chunked_vocos_vocoding_equals_unchunked(vocos_run):
    generator, _ = load_generator(vocos_run, "speech")
    mel = torch.randn(80, 300) - 5
    whole = vocode(generator, mel, chunk_frames=10_000)
    assert whole.shape == (300 * HOP,)
    for chunk in (7, 64, 299):
        assert torch.allclose(vocode(generator, mel, chunk_frames=chunk), whole, atol=1e-5), chunk


@pytest.mark.slow
def test_a_short_vocos_training_lowers_the_mel_loss(tmp_path, cli_run):
    # the whole GAN objective (hinge, feature matching, mel L1 x 45) with the MPD alone: seconds on a CPU
    run = tmp_path / "run"
    result = cli_run(*vocos_args(run, steps=20, batch_size=4, extra=[
        "speech.discriminator=mpd", "train.lr_g=2e-3", "train.sample_every=1000", "train.checkpoint_every=1000"]))
    assert result.exit_code == 0, result.output
    mel = [r["speech/g/mel"] for r in read_metrics(run) if "speech/g/mel" in r]
    assert len(mel) == 20
    assert np.mean(mel[-5:]) < 0.9 * np.mean(mel[:5]), mel


@pytest.mark.parametrize(("setting", "fragment"), [
    ("speech.generator=hifigan", "generator must be melgan or vocos, got 'hifigan'"),
    ("speech.discriminator=mpd+mpd", "discriminator must be msd, mpd, mrd"),
    ("speech.discriminator=wavenet", "got 'wavenet'"),
    ("speech.mpd_channels=0", "mpd_channels must be between 1 and 1024, got 0"),
    ("speech.mrd_channels=4096", "mrd_channels must be between 1 and 1024, got 4096"),
])
def test_vocos_config_mistakes_are_one_line(setting, fragment, tmp_path, cli_run):
    assert_one_line_error(cli_run(*vocos_args(tmp_path / "run", extra=[setting])), "[speech]", fragment)


@pytest.mark.slow
def test_phase_projections_train_from_their_start_step_and_always_vocode(tmp_path, cli_run, monkeypatch):
    import mmgan_speech.vocos as vocos

    calls = []  # per projection call: (a training forward, i.e. grad on?, how many iterations)
    real = vocos.project_phase

    def spy(magnitude, phase, iterations, *args, **kwargs):
        calls.append((torch.is_grad_enabled(), iterations))
        return real(magnitude, phase, iterations, *args, **kwargs)

    monkeypatch.setattr(vocos, "project_phase", spy)
    run = tmp_path / "run"
    result = cli_run(*vocos_args(run, steps=4, batch_size=2, extra=[
        "speech.phase_iterations=3", "speech.train_phase_iterations=2", "speech.phase_iterations_start=2",
        "train.sample_every=1000", "train.checkpoint_every=1000", "train.eval_every=1000"]))
    assert result.exit_code == 0, result.output
    assert [n for grad, n in calls if grad] == [2, 2]  # training steps 2 and 3 only, 2 each
    assert calls and {n for grad, n in calls if not grad} == {3}  # the last samples and evaluation: 3
    generator, config = load_generator(run, "speech")
    head = generator.heads["speech"]
    assert (config.phase_iterations, head.phase_iterations, head.train_phase_iterations) == (3, 3, 2)
    assert head.iterations_now is None  # a loaded generator vocodes with phase_iterations
    # `mmgan vocode --phase-iterations` overrides the count; chunked output still equals whole
    wave = 0.5 * np.sin(2 * np.pi * 330 * np.arange(HOP * 60) / 22050).astype(np.float32)
    write_wav(tmp_path / "in.wav", wave, 22050)
    outs = {}
    for name, extra in (("run", []), ("none", ["--phase-iterations", "0"]), ("more", ["--phase-iterations", "6"]),
                        ("more7", ["--phase-iterations", "6", "--chunk-frames", "7"])):
        result = cli_run("vocode", run, tmp_path / "in.wav", "-o", tmp_path / f"{name}.wav", *extra)
        assert result.exit_code == 0, result.output
        outs[name] = read_wav(tmp_path / f"{name}.wav")
    assert np.allclose(outs["more7"], outs["more"], atol=2e-4)
    assert not np.allclose(outs["none"], outs["run"], atol=1e-3)
    assert not np.allclose(outs["more"], outs["run"], atol=1e-3)
    assert_one_line_error(cli_run("vocode", run, tmp_path / "in.wav", "-o", tmp_path / "x.wav",
                                  "--phase-iterations", "-1"), "phase-iterations")
