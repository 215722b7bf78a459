"""`mmgan vocode` on long inputs: a .wav read a block at a time gives the whole file's mel, chunked vocoding
equals unchunked for any trunk (the overlap is the generator's receptive field), and --precision."""

from __future__ import annotations

import struct
import wave as wave_module
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile
import scipy.signal
import torch
from conftest import TINY_CORE, assert_one_line_error

from mmgan.config import resolve
from mmgan.contract.manager import get_modality
from mmgan.engine import Trainer
from mmgan.errors import DataError
from mmgan.trunk import GeneratorSet, LatentTrunk, TrunkConfig
from mmgan_speech import vocode as vocode_module
from mmgan_speech.audio import WavBlocks, read_wav, write_wav
from mmgan_speech.mel import MelConfig, mel_spectrogram_long
from mmgan_speech.networks import remove_weight_norm
from mmgan_speech.plugin import SpeechConfig, plugin
from mmgan_speech.vocode import context_frames, read_mel_input, resolve_precision, vocode

HOP = MelConfig().hop_length


def signal(samples: int, channels: int, seed: int = 0) -> np.ndarray:
    """A tone and noise in [-1, 1]: (samples,) or (samples, channels)."""
    rng = np.random.default_rng(seed)
    x = 0.5 * np.sin(np.arange(samples) * 0.07)[:, None] + 0.2 * rng.uniform(-1, 1, (samples, channels))
    return x[:, 0] if channels == 1 else x


def write_pcm24(path: Path, x: np.ndarray, rate: int, extensible: bool) -> None:
    """24-bit PCM in 3-byte containers, the layout scipy cannot memory-map; WAVE_FORMAT_EXTENSIBLE as
    most 24-bit writers make it, or the plain PCM tag."""
    channels = 1 if x.ndim == 1 else x.shape[1]
    data = (np.round(x.reshape(-1) * (2**23 - 1)).astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]).tobytes()
    if not extensible:
        with wave_module.open(str(path), "wb") as out:
            out.setnchannels(channels)
            out.setsampwidth(3)
            out.setframerate(rate)
            out.writeframes(data)
        return
    pcm_guid = b"\x01\x00\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * 3 * channels, 3 * channels, 24, 22, 24, 0)
    fmt += pcm_guid
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def write_format(path: Path, kind: str, rate: int, channels: int, seconds: float = 1.3) -> Path:
    x = signal(int(rate * seconds) + 37, channels)
    if kind == "pcm16":
        scipy.io.wavfile.write(path, rate, np.round(x * 32767).astype(np.int16))
    elif kind == "float32":
        scipy.io.wavfile.write(path, rate, (1.2 * x).astype(np.float32))  # beyond full scale: scaled as read
    elif kind == "pcm8":
        scipy.io.wavfile.write(path, rate, np.round(x * 127 + 128).astype(np.uint8))
    else:
        write_pcm24(path, x, rate, extensible=kind == "pcm24x")
    return path


FORMATS = ["pcm16", "float32", "pcm8", "pcm24", "pcm24x"]


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("rate", [22050, 16000, 44100])
@pytest.mark.parametrize("channels", [1, 2])
def test_blocks_equal_the_whole_file_read(tmp_path, kind, rate, channels):
    path = write_format(tmp_path / "in.wav", kind, rate, channels)
    whole = read_wav(path)
    blocks = WavBlocks(path)
    assert blocks.length == len(whole)
    assert blocks.container == (3 if kind.startswith("pcm24") else 0)
    # resampled block by block with the filter's context, each block's samples are the whole file's
    for start, stop in [(0, 700), (1, 2), (333, 9000), (len(whole) - 1500, len(whole)), (0, len(whole) + 10)]:
        assert np.array_equal(blocks.read(start, stop), whole[start:stop]), (start, stop)


@pytest.mark.parametrize(
    ("kind", "rate", "channels"), [("pcm16", 22050, 1), ("float32", 48000, 2), ("pcm24x", 16000, 1)]
)
def test_the_streamed_mel_equals_the_whole_file_mel(tmp_path, kind, rate, channels):
    path = write_format(tmp_path / "in.wav", kind, rate, channels, seconds=2.1)
    reference = mel_spectrogram_long(torch.from_numpy(read_wav(path)))
    mel = read_mel_input(path)
    assert mel.shape == tuple(reference.shape)
    frames = mel.shape[1]
    for lo, hi in [(0, frames), (0, 3), (5, 70), (frames - 4, frames), (frames - 1, frames)]:
        assert torch.allclose(mel[:, lo:hi], reference[:, lo:hi], atol=1e-5, rtol=0), (lo, hi)
    assert mel.numpy().shape == (80, frames)


def test_a_wav_input_is_never_decoded_whole(tmp_path, monkeypatch):
    path = write_format(tmp_path / "in.wav", "pcm16", 44100, 2, seconds=2.0)
    expected = mel_spectrogram_long(torch.from_numpy(read_wav(path)))

    def refuse(*args, **kwargs):
        raise AssertionError("decoded whole")

    monkeypatch.setattr("mmgan_speech.audio._decoded", refuse)
    mel = read_mel_input(path)
    assert torch.allclose(
        torch.cat([mel[:, lo : lo + 16] for lo in range(0, mel.shape[1], 16)], 1), expected, atol=1e-5
    )


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what its DataError says)."""
    good = write_format(tmp_path / "good.wav", "pcm16", 22050, 1).read_bytes()
    packed = write_format(tmp_path / "packed.wav", "pcm24x", 22050, 2).read_bytes()
    files = {
        "missing": (b"", "no such file"),
        "text": (b"hello, this is a transcript\n", "not a WAV file"),
        "empty": (b"", "not a WAV file"),
        "truncated": (good[: len(good) // 2], "truncated"),
        "truncated24": (packed[: len(packed) // 2], "truncated"),
        "header-only": (good[:44], "truncated"),
    }
    out = {}
    for name, (content, what) in files.items():
        path = tmp_path / f"{name}.wav"
        if name != "missing":
            path.write_bytes(content)
        out[name] = (path, what)
    scipy.io.wavfile.write(tmp_path / "zero.wav", 22050, np.zeros(0, np.int16))
    out["zero"] = (tmp_path / "zero.wav", "no samples")
    scipy.io.wavfile.write(tmp_path / "nan.wav", 22050, np.r_[np.zeros(5000), np.inf].astype(np.float32))
    out["nan"] = (tmp_path / "nan.wav", "NaN or infinite")
    scipy.io.wavfile.write(tmp_path / "one_hz.wav", 1, np.zeros(500, np.int16))
    out["one_hz"] = (tmp_path / "one_hz.wav", "sample rate 1 Hz")
    fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)  # mu-law
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 10) + bytes(10)
    (tmp_path / "mulaw.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    out["mulaw"] = (tmp_path / "mulaw.wav", "unsupported WAV sample format")
    return out


def test_bad_wav_files_are_one_line_errors_naming_them(tmp_path):
    for name, (path, what) in bad_inputs(tmp_path).items():
        with pytest.raises(DataError) as err:
            read_mel_input(path)
        message = str(err.value)
        assert str(path) in message and what in message and "\n" not in message, (name, message)
        with pytest.raises(DataError):  # and read_wav refuses the same files
            read_wav(path)
    write_wav(tmp_path / "short.wav", np.zeros(500, np.float32), 22050)
    with pytest.raises(DataError, match="short.wav: too short to vocode"):
        read_mel_input(tmp_path / "short.wav")


# ---- chunked == unchunked ----------------------------------------------------------------------------


def generator_of(kind: str, depth: int = 2, kernel_size: int = 3, seed: int = 0,
                 phase_iterations: int = 0) -> GeneratorSet:
    """A tiny generator with every weight drawn at random: a fresh trunk is the identity (zero gates or
    zero last layers), which would hide a receptive field too small for its blocks. No phase projections
    in the vocos head unless asked (the default's 32 would widen every reach by 96 frames)."""
    torch.manual_seed(seed)
    config = SpeechConfig(generator=kind, ngf=4, phase_iterations=phase_iterations)
    stem, head = plugin.build_generator(config, 16)
    trunk = LatentTrunk(TrunkConfig(width=16, depth=depth, kernel_size=kernel_size), ["speech"])
    generator = remove_weight_norm(GeneratorSet(trunk, {"speech": (stem, head)}))
    with torch.no_grad():
        for parameter in generator.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
        for gate in generator.trunk.gate.values():
            gate.fill_(0.5)  # every block's share of the residual stream, not a trace of it
    return generator.eval().requires_grad_(False)


def test_the_overlap_is_the_receptive_field():
    # vocos: stem k7 (3 each side) + one frame per trunk block of kernel 3 + the inverse STFT's 2
    assert [context_frames(generator_of("vocos", depth)) for depth in (0, 2, 8)] == [5, 7, 13]
    assert context_frames(generator_of("vocos", depth=3, kernel_size=41)) == 3 + 3 * 20 + 2
    # a modality going through fewer blocks than the trunk has needs less
    shallow = generator_of("vocos", depth=8)
    shallow.depths["speech"] = 1
    assert context_frames(shallow) == 6
    # each phase projection of the head reaches 3 frames further on each side
    assert context_frames(generator_of("vocos", 2, phase_iterations=2)) == 7 + 2 * 3
    # the frames that one frame's samples depend on, found by the gradient, are exactly that far (vocos)
    # or within it (melgan: the transposed convolutions' reach is bounded, not exact)
    for kind, depth, projections in [("vocos", 2, 0), ("vocos", 8, 0), ("vocos", 2, 2), ("melgan", 2, 0)]:
        generator, frame = generator_of(kind, depth, phase_iterations=projections), 30
        mel = (torch.randn(1, 80, 61) - 5).requires_grad_(True)
        with torch.enable_grad():
            wave = generator("speech", mel).reshape(-1)
            (wave[frame * HOP : (frame + 1) * HOP] * torch.randn(HOP)).sum().backward()
        seen = (mel.grad[0].abs().sum(0) > 0).nonzero().flatten()
        reach = max(frame - int(seen.min()), int(seen.max()) - frame)
        assert reach == context_frames(generator) if kind == "vocos" else reach <= context_frames(generator)


@pytest.mark.parametrize(("kind", "depth", "kernel_size"), [("vocos", 8, 3), ("vocos", 4, 61), ("melgan", 8, 3)])
def test_chunked_vocoding_equals_unchunked_for_a_deep_trunk(kind, depth, kernel_size):
    generator = generator_of(kind, depth, kernel_size)
    frames = 300
    mel = torch.randn(80, frames) - 5
    whole = generator("speech", mel[None]).reshape(-1)
    assert torch.allclose(vocode(generator, mel, chunk_frames=10_000), whole, atol=1e-5)
    for chunk in (16, 37, 299):
        chunked = vocode(generator, mel, chunk_frames=chunk)
        assert chunked.shape == (frames * HOP,)
        assert torch.allclose(chunked, whole, atol=1e-5), chunk
    # the 64 frames vocode used to overlap by are too few for 4 blocks of kernel 61 (125 frames of reach)
    old = vocode(generator, mel, chunk_frames=16, overlap=64)
    assert torch.allclose(old, whole, atol=1e-5) == (context_frames(generator) <= 64)


def test_a_streamed_wav_vocodes_as_its_whole_mel(tmp_path):
    generator = generator_of("vocos", depth=8)
    path = write_format(tmp_path / "in.wav", "pcm16", 16000, 2, seconds=1.5)
    whole = vocode(generator, mel_spectrogram_long(torch.from_numpy(read_wav(path))), chunk_frames=10_000)
    streamed = vocode(generator, read_mel_input(path), chunk_frames=16)
    assert streamed.shape == whole.shape and torch.allclose(streamed, whole, atol=1e-5)


def test_a_function_gets_the_old_overlap_and_an_unknown_layer_is_refused(monkeypatch):
    generator = generator_of("vocos")
    mel = torch.randn(80, 100) - 5
    seen = []

    def step(modality: str, chunk: torch.Tensor) -> torch.Tensor:
        seen.append(chunk.shape[-1])
        return generator(modality, chunk)

    assert torch.allclose(vocode(step, mel, chunk_frames=20), vocode(generator, mel, chunk_frames=20), atol=1e-5)
    assert max(seen) == 100  # 20 frames and 64 of overlap on each side reach both ends
    generator.heads["speech"].istft = torch.nn.GRU(4, 4)
    with pytest.raises(ValueError, match="cannot bound the receptive field of GRU"):
        context_frames(generator)


# ---- precision ---------------------------------------------------------------------------------------


def snr_db(reference: torch.Tensor, other: torch.Tensor) -> float:
    return float(10 * torch.log10(reference.square().sum() / (reference - other).square().sum()))


@pytest.mark.parametrize("kind", ["vocos", "melgan"])
def test_bf16_vocoding_is_close_to_fp32(kind):
    generator = generator_of(kind, depth=2)
    mel = torch.randn(80, 60) * 0.5 - 4
    fp32 = vocode(generator, mel, chunk_frames=25)
    bf16 = vocode(generator, mel, chunk_frames=25, precision="bf16")
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all()
    assert not torch.equal(bf16, fp32)  # it did run in bf16
    assert snr_db(fp32, bf16) > 20, snr_db(fp32, bf16)


def test_auto_precision_is_bf16_only_where_native(monkeypatch):
    monkeypatch.setattr(vocode_module, "native_bf16", lambda device: True)
    assert resolve_precision("auto", torch.device("cpu")) == "bf16"
    monkeypatch.setattr(vocode_module, "native_bf16", lambda device: False)
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    with pytest.raises(ValueError, match="precision must be fp32, bf16, auto, got 'fp16'"):
        resolve_precision("fp16", torch.device("cpu"))


# ---- through the CLI ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vocos_export(tmp_path_factory) -> Path:
    """An untrained vocos run's export (as `mmgan run` leaves one), with an 8-block trunk."""
    run = tmp_path_factory.mktemp("stream") / "run"
    overrides = [*TINY_CORE, "trunk.depth=8", "speech.generator=vocos", "speech.segment_length=2048",
                 "speech.mpd_channels=2", "speech.mrd_channels=2"]  # fmt: skip
    config = resolve(get_modality, plugins=["speech"], out=run, steps=1, batch_size=2, overrides=overrides)
    Trainer(config, progress=False).export()
    return run


def test_the_command_streams_a_wav_and_takes_a_precision(vocos_export, tmp_path, cli_run):
    path = write_format(tmp_path / "in.wav", "float32", 44100, 2, seconds=1.0)
    result = cli_run("vocode", vocos_export, path, "-o", tmp_path / "out.wav", "--chunk-frames", "16")
    assert result.exit_code == 0, result.output
    assert "fp32" in result.output
    from mmgan.evaluation.inference import load_generator

    generator, _ = load_generator(vocos_export, "speech")
    expected = vocode(generator, mel_spectrogram_long(torch.from_numpy(read_wav(path))), chunk_frames=10_000)
    got = read_wav(tmp_path / "out.wav")
    assert len(got) == len(expected)
    # 16-bit PCM is written x 32767 and read / 32768: at full scale that gain is worth one step of rounding
    assert np.abs(got - expected.clamp(-1, 1).numpy() * 32767 / 32768).max() <= 1 / 32767  # 16-bit rounding
    result = cli_run("vocode", vocos_export, path, "-o", tmp_path / "bf16.wav", "--precision", "bf16")
    assert result.exit_code == 0 and "bf16" in result.output, result.output
    assert np.isfinite(read_wav(tmp_path / "bf16.wav")).all()
    assert_one_line_error(
        cli_run("vocode", vocos_export, path, "-o", tmp_path / "x.wav", "--precision", "fp16"), "--precision", "fp16"
    )
    assert_one_line_error(cli_run("vocode", vocos_export, tmp_path / "nope.wav", "-o", tmp_path / "x.wav"), "nope.wav")
    assert not (tmp_path / "x.wav").exists()


def test_non_finite_output_is_a_one_line_error(vocos_export, tmp_path, cli_run, monkeypatch):
    path = write_format(tmp_path / "in.wav", "pcm16", 22050, 1)
    monkeypatch.setattr(vocode_module, "vocode_chunks", lambda *args, **kwargs: iter([torch.full((HOP,), np.nan)]))
    result = cli_run("vocode", vocos_export, path, "-o", tmp_path / "out.wav", "--precision", "bf16")
    assert_one_line_error(result, "in.wav", "NaN or infinite", "--precision fp32")
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize("order", ["C", "F"])
def test_a_npy_mel_is_read_a_slice_at_a_time_and_checked_throughout(tmp_path, order):
    mel = np.asarray(np.random.default_rng(0).standard_normal((80, 9000)) - 5, np.float64, order=order)
    np.save(tmp_path / "mel.npy", mel)
    read = read_mel_input(tmp_path / "mel.npy")
    assert read.shape == (80, 9000)
    for lo, hi in [(0, 9000), (0, 1), (4090, 4200), (8999, 9000)]:
        assert torch.equal(read[:, lo:hi], torch.from_numpy(mel[:, lo:hi].astype(np.float32))), (lo, hi)
    for value, what in [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"), (1e30, "another scale")]:
        bad = mel.copy()
        bad[7, 8500] = value  # in the last block of the check
        np.save(tmp_path / "bad.npy", bad)
        with pytest.raises(DataError, match=what):
            read_mel_input(tmp_path / "bad.npy")


def test_packed_samples_in_a_big_endian_file_are_decoded_whole(tmp_path):
    # RIFX (big-endian RIFF) with 24-bit samples: rare enough to read whole rather than parse in blocks
    x = signal(3000, 1)
    data = (np.round(x * (2**23 - 1)).astype(">i4").view(np.uint8).reshape(-1, 4)[:, 1:]).tobytes()
    fmt = struct.pack(">HHIIHH", 1, 1, 16000, 16000 * 3, 3, 24)
    body = b"WAVE" + b"fmt " + struct.pack(">I", len(fmt)) + fmt + b"data" + struct.pack(">I", len(data)) + data
    (tmp_path / "rifx.wav").write_bytes(b"RIFX" + struct.pack(">I", len(body)) + body)
    blocks = WavBlocks(tmp_path / "rifx.wav")
    assert blocks.whole is not None
    whole = read_wav(tmp_path / "rifx.wav")
    assert np.array_equal(blocks.read(0, len(whole)), whole) and np.array_equal(blocks.read(7, 99), whole[7:99])
    assert np.abs(whole - scipy.signal.resample_poly(x, 441, 320)).max() < 1e-3
