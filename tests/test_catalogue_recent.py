"""Rows 55-92 of the fault catalogue (docs/reliability.md) that no other test kept: one test per row or group.

Each docstring names its rows. The rows kept elsewhere are listed with their tests in docs/reliability.md.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import pickle
import shutil
import struct
import tarfile
import urllib.parse
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile
import torch
from click.testing import CliRunner
from conftest import SPEECH_TINY, TINY_CORE, assert_one_line_error, tiny_args
from PIL import Image
from test_catalogue import Evil
from test_check_plugin import Flat
from torch import nn

from mmgan import config as cfg
from mmgan.cli.commands import build_cli
from mmgan.config.trackers import check_trackers
from mmgan.contract.manager import get_modality
from mmgan.data.shards import ShardStream, check_pack_output, open_shards, pack
from mmgan.errors import ConfigError, DataError, MetricError
from mmgan.testing import plugin_registered
from mmgan_image.inception import load_fid_inception
from mmgan_image.shards import ImageCodec
from mmgan_speech.audio import WavBlocks, read_wav, write_wav
from mmgan_speech.datasets import WavFolderDataset
from mmgan_speech.shards import SpeechCodec
from mmgan_speech.vocode import read_mel_input

SR = 22050
# faults row 62: a run directory whose name has spaces, non-ASCII letters and URL syntax
ODD_NAME = "my run ü 漢 #1?%20"


def cli(*args: object) -> str:
    result = CliRunner().invoke(build_cli(), [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    """A finished tiny image run, trained from the command line into ODD_NAME; tests that change it use a copy."""
    run = tmp_path_factory.mktemp("image") / ODD_NAME
    cli("run", "--plugin", "image", *tiny_args(run, steps=1))
    return run


@pytest.fixture(scope="module")
def speech_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("speech") / "run"
    cli("run", "--plugin", "speech", "--out", run, "--steps", "1", "--batch-size", "2", "--no-progress",
        *[a for s in (*TINY_CORE, *SPEECH_TINY) for a in ("--set", s)])
    return run


def copy_run(run: Path, tmp_path: Path, name: str = "run") -> Path:
    """The run without its checkpoints (the report does not read them) and without a report."""
    return Path(shutil.copytree(run, tmp_path / name, ignore=shutil.ignore_patterns("checkpoints", "report")))


def noise(samples: int, channels: int = 1, amplitude: float = 0.5) -> np.ndarray:
    x = np.random.default_rng(0).uniform(-amplitude, amplitude, (samples, channels))
    return x[:, 0] if channels == 1 else x


# ---- report -----------------------------------------------------------------------------------------------

def test_report_of_a_directory_without_a_run_is_one_line_and_writes_nothing(cli_run, tmp_path):
    """Row 55: a non-run directory, an empty one, a missing one."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine\n")
    for name in ("empty", "notes"):
        assert_one_line_error(cli_run("report", tmp_path / name), name, "holds no run",
                              "no config.toml and no metrics.jsonl")
    assert_one_line_error(cli_run("report", tmp_path / "missing"), "missing", "is not a run directory")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["empty", "notes", "notes/todo.txt"]


@pytest.mark.slow
def test_report_of_a_run_whose_metrics_are_missing_or_damaged_is_a_page_without_those_curves(image_run, tmp_path):
    """Row 56: metrics.jsonl deleted; lines of garbage, NaN and infinity, a truncated last line."""
    gone = copy_run(image_run, tmp_path, "gone")
    (gone / "metrics.jsonl").unlink()
    cli("report", gone)
    assert (gone / "report" / "index.html").is_file() and not (gone / "report" / "plots").exists()
    damaged = copy_run(image_run, tmp_path, "damaged")
    with open(damaged / "metrics.jsonl", "a") as f:
        f.write('garbage\n[1, 2]\n{"step": "x"}\n{"step": 2, "image/g/adv": NaN, "image/d/adv": Infinity}\n'
                '{"step": 3, "image/d/a')
    cli("report", damaged)
    html = (damaged / "report" / "index.html").read_text()
    assert (damaged / "report" / "plots" / "image_losses.png").stat().st_size > 0
    assert "g/adv" in html and "d/adv" in html


@pytest.mark.slow
def test_report_compares_an_image_and_a_speech_run(image_run, speech_run, tmp_path):
    """Row 59: runs of two modalities side by side, each with its own samples."""
    cli("report", image_run, speech_run, "-o", tmp_path / "both")
    html = (tmp_path / "both" / "index.html").read_text()
    assert 'id="samples-image"' in html and 'id="samples-speech"' in html and 'id="differences"' in html


def test_report_refuses_an_output_that_is_not_a_report(cli_run, image_run):
    """Row 59: -o the run itself, its samples/, its config.toml, /proc/x; the run is left as it was."""
    before = sorted(str(p.relative_to(image_run)) for p in image_run.rglob("*"))
    for out in (image_run, image_run / "samples"):
        assert_one_line_error(cli_run("report", image_run, "-o", out), "holds files that are not an mmgan report")
    assert_one_line_error(cli_run("report", image_run, "-o", image_run / "config.toml"),
                          "config.toml is a file; give a directory")
    if Path("/proc").is_dir():
        assert_one_line_error(cli_run("report", image_run, "-o", "/proc/x"), "cannot write /proc/x")
    assert sorted(str(p.relative_to(image_run)) for p in image_run.rglob("*")) == before


@pytest.mark.slow
def test_a_run_directory_whose_name_needs_escaping_trains_generates_and_reports_with_an_escaped_url(
        cli_run, image_run, tmp_path):
    """Row 62: --out 'my run ü 漢 #1?%20' (the fixture trained there from the command line)."""
    assert image_run.name == ODD_NAME and (image_run / "export" / "image.safetensors").is_file()
    run = copy_run(image_run, tmp_path, ODD_NAME)
    assert cli_run("generate", run, "-n", "4", "-o", run / "g.png").exit_code == 0
    result = cli_run("report", run)
    assert result.exit_code == 0, result.output
    url = result.output.split("open it in a browser: ")[1].strip().removesuffix(")")
    assert url.startswith("file://") and " " not in url and "#" not in url and "?" not in url
    assert Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)) == run.resolve() / "report" / "index.html"
    # compared, the name is in the legends: 漢 is missing from the font, drawn as a box without two lines of warning
    other = copy_run(image_run, tmp_path / "b", ODD_NAME)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli_run("report", run, other, "-o", tmp_path / "both").exit_code == 0
    assert not [w for w in caught if "Glyph" in str(w.message)]


# ---- trackers ---------------------------------------------------------------------------------------------

def test_a_tracker_directory_that_cannot_be_written_and_a_missing_mlflow_are_one_line(cli_run, tmp_path,
                                                                                       monkeypatch):
    """Row 65: tensorboard with RUN/trackers a file; mlflow not installed (an unknown tracker: test_tracking)."""
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    run.mkdir()
    (run / "trackers").write_text("mine\n")
    result = cli_run("run", "--plugin", "image", *tiny_args(run, steps=1), "--set", "train.log_with=tensorboard")
    assert_one_line_error(result, "train.log_with: the tensorboard tracker could not start", "trackers",
                          "Not a directory", "leave it out of train.log_with")
    assert (run / "trackers").read_text() == "mine\n" and not (run / "config.toml").exists()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match="the mlflow tracker needs the mlflow package: pip install mlflow"):
        check_trackers(["mlflow"])


# ---- new-plugin, check-plugin -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["123abc", "../evil", "a b", "ünï", "x/y"])
def test_new_plugin_refuses_names_that_are_not_identifiers_and_writes_nothing(cli_run, tmp_path, name):
    """Row 67 (my-plugin and an existing directory: tests/test_scaffold.py)."""
    out = tmp_path / "out"
    out.mkdir()
    assert_one_line_error(cli_run("new-plugin", name, "-o", out), f"plugin name {name!r}",
                          "use lower case letters, digits and _")
    assert not list(tmp_path.rglob("*mmgan-*")) and not list(out.iterdir())


class _Times(nn.Module):
    def __init__(self, head: nn.Module, factor: float) -> None:
        super().__init__()
        self.head, self.factor = head, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x) * self.factor


class RaisesInBuild(Flat):
    def build_generator(self, config, width):
        raise ValueError("the plugin's own bug in build_generator")


class NanGenerator(Flat):
    def build_generator(self, config, width):
        stem, head = super().build_generator(config, width)
        return stem, _Times(head, float("nan"))


class ZeroGenerator(Flat):
    def build_generator(self, config, width):
        stem, head = super().build_generator(config, width)
        return stem, _Times(head, 0.0)


class NoData(Flat):
    def read_data(self, source, config, seed):
        return torch.zeros(0, 16)


def check(plugin: Flat):
    with plugin_registered(plugin, name="flat"):
        return CliRunner().invoke(build_cli(), ["check-plugin", "flat", "--set", "trunk.width=8", "--steps", "4"],
                                  catch_exceptions=False)


def test_check_plugin_fails_in_one_line_on_a_build_error_empty_data_and_nan_samples():
    """Row 69 (a generator of the wrong length: tests/test_check_plugin.py); row 70's G x 0 (it was a warning)."""
    # the plugin's bug was the catch-all naming neither plugin nor method
    assert_one_line_error(check(RaisesInBuild()), "modality 'flat' (plugin test_catalogue_recent): build_generator "
                          "raised ValueError: the plugin's own bug in build_generator", "rerun with -v")
    assert_one_line_error(check(NoData()), "data source 'builtin:flat' for modality 'flat' holds no samples")
    nan = check(NanGenerator())
    assert_one_line_error(nan, "1 check(s) of flat failed")
    assert "error    the discriminator's loss is not finite" in nan.output
    zero = check(ZeroGenerator())
    assert_one_line_error(zero, "1 check(s) of flat failed")
    assert "error    the generator's samples do not vary after 4 steps (std over the batch 0.00e+00" in zero.output


# ---- resume, init-trunk, config ---------------------------------------------------------------------------

def test_resume_auto_in_capitals_and_without_a_plugin_are_one_line(cli_run, tmp_path):
    """Row 74: `--resume AUTO` (it got an unrelated --config/--out message); `--resume auto` with an empty --out
    and no --plugin."""
    assert_one_line_error(cli_run("run", "--plugin", "image", "--resume", "AUTO", "--out", tmp_path / "x"),
                          "--resume AUTO: there is no run directory AUTO; --resume auto (lower case)")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli_run("run", "--resume", "auto", "--out", tmp_path / "empty", "--steps", "1"),
                          "no modality to train")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"] and not list((tmp_path / "empty").iterdir())


def test_init_trunk_from_the_run_itself_is_one_line_and_freeze_trunk_alone_a_warning(cli_run, tmp_path, caplog):
    """Row 75: --init-trunk X --out X for a new X; --freeze-trunk without --init-trunk (the width mismatch and a
    non-run directory: tests/test_speech_plugin.py)."""
    run = tmp_path / "run"
    assert_one_line_error(cli_run("run", "--plugin", "image", *tiny_args(run, steps=1), "--init-trunk", run),
                          f"--init-trunk {run}: no exported generator there")
    assert not run.exists()
    with caplog.at_level(logging.WARNING, logger="mmgan"):  # once (it was printed twice)
        assert cli_run("run", "--plugin", "image", *tiny_args(run, steps=1), "--freeze-trunk").exit_code == 0
    assert caplog.text.count("run.freeze_trunk without run.init_trunk: the trunk stays at its random") == 1
    # with --overwrite it removed the run it was to start from, then found no export there
    export = (run / "export" / "image.safetensors").read_bytes()
    assert_one_line_error(cli_run("run", "--plugin", "image", *tiny_args(run, steps=1), "--init-trunk", run,
                                  "--overwrite"), f"--init-trunk {run} is the run --overwrite would remove")
    assert (run / "export" / "image.safetensors").read_bytes() == export


def test_range_errors_and_quoted_values_in_a_config_file_name_the_file_and_the_key(tmp_path):
    """Row 77: a value out of range from a --config file named the key but not the file; a quoted number or
    bool in the file ('8', 'yes') was parsed as --set parses it. --set keeps its wording and its strings."""
    path = tmp_path / "two.toml"
    for line, named in (("[speech]\nlr_g = -1", "two.toml: speech.lr_g must be >= 0 (0: train.lr_g), got -1.0"),
                        ("[speech]\nsegment_length = 5", "two.toml: [speech] segment_length must be a multiple"),
                        ("[speech]\nngf = '8'", "two.toml: speech.ngf: expected an integer, got the string '8'; "
                                             "write 8 without quotes"),
                        ("[image]\nspectral_norm = 'yes'", "two.toml: image.spectral_norm: expected true or false, "
                                                          "got the string 'yes'; write true without quotes"),
                        ("[train]\nlr_g = '1e-3'", "two.toml: train.lr_g: expected a number, got the string")):
        path.write_text(f"[run]\nmodalities = ['image', 'speech']\n{line}\n")
        with pytest.raises(ConfigError) as err:
            cfg.resolve(get_modality, config_file=path)
        assert named in str(err.value) and "\n" not in str(err.value), str(err.value)
    path.write_text("[run]\nmodalities = ['image', 'speech']\n[speech]\nlr_g = -1\n")
    with pytest.raises(ConfigError) as err:  # --set's value replaced the file's: the error is --set's
        cfg.resolve(get_modality, config_file=path, overrides=["speech.lr_g=-2"])
    assert str(err.value) == "speech.lr_g must be >= 0 (0: train.lr_g), got -2.0"
    config = cfg.resolve(get_modality, config_file=path, overrides=["speech.lr_g=0", "image.spectral_norm=yes",
                                                                    "speech.ngf=8"])
    assert config.modalities["image"].spectral_norm is True and config.modalities["speech"].ngf == 8


def test_wrong_types_in_a_two_modality_config_file_name_the_file_and_the_key(tmp_path):
    """Row 77: wrong TOML types in either modality's section of a two-modality run (bad values through --set:
    tests/test_multitask.py)."""
    for section, line, named in (("speech", "ngf = 'four'", "speech.ngf: expected an integer, got 'four'"),
                                 ("image", "spectral_norm = 'maybe'", "image.spectral_norm: expected true or false"),
                                 ("speech", "lr_g = -1", "speech.lr_g must be >= 0")):
        path = tmp_path / "two.toml"
        path.write_text(f"[run]\nmodalities = ['image', 'speech']\n[{section}]\n{line}\n")
        with pytest.raises(ConfigError) as err:
            cfg.resolve(get_modality, config_file=path)
        assert named in str(err.value) and "\n" not in str(err.value), str(err.value)
        if "expected" in named:
            assert "two.toml" in str(err.value)


# ---- vocode and WAV headers -------------------------------------------------------------------------------

def _pcm24(path: Path, x: np.ndarray, rate: int) -> None:
    from test_vocode_stream import write_pcm24

    write_pcm24(path, x, rate, extensible=True)


@pytest.mark.parametrize("name, write", [
    ("96k_8ch_noise.wav", lambda p: scipy.io.wavfile.write(p, 96000, noise(96000, 8).astype(np.float32))),
    ("48k_24bit.wav", lambda p: _pcm24(p, noise(48000), 48000)),
    ("16k_8bit.wav", lambda p: scipy.io.wavfile.write(p, 16000, np.round(noise(16000) * 127 + 128).astype(np.uint8))),
])
def test_vocode_takes_any_rate_width_and_channel_count(name, write, cli_run, speech_run, tmp_path):
    """Row 79: 96 kHz with 8 channels of noise, 24-bit at 48 kHz, 8-bit at 16 kHz: one second each."""
    write(tmp_path / name)
    result = cli_run("vocode", speech_run, tmp_path / name, "-o", tmp_path / "o.wav")
    assert result.exit_code == 0, result.output
    assert len(read_wav(tmp_path / "o.wav")) == pytest.approx(SR, abs=256)


def test_vocode_of_a_1_khz_wav_is_one_line(cli_run, speech_run, tmp_path):
    """Row 79: a rate below 4 kHz (empty and NaN input: tests/test_vocode_stream.py)."""
    scipy.io.wavfile.write(tmp_path / "1k.wav", 1000, np.round(noise(1000) * 32767).astype(np.int16))
    assert_one_line_error(cli_run("vocode", speech_run, tmp_path / "1k.wav", "-o", tmp_path / "o.wav"),
                          "1k.wav: WAV header gives sample rate 1000 Hz; expected 4000 to 384000 Hz")
    assert not (tmp_path / "o.wav").exists()


def lying(path: Path, offset: int, fmt: str, value: int) -> Path:
    """A good 16-bit mono WAV whose header field at ``offset`` says ``value``."""
    write_wav(path, 0.1 * np.sin(np.arange(SR) * 0.05), SR)
    data = bytearray(path.read_bytes())
    data[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("name, offset, fmt, value, fragment", [
    ("riff_size.wav", 4, "<I", 10**9, "truncated WAV file"),  # the RIFF chunk's size
    ("rate.wav", 24, "<I", 8000, "truncated or corrupt WAV file (WAV header is invalid"),
    ("byte_rate.wav", 28, "<I", 7, "truncated or corrupt WAV file (WAV header is invalid"),
    ("block_align.wav", 32, "<H", 3, "truncated or corrupt WAV file (WAV header is invalid"),
    ("format.wav", 20, "<H", 0x55, "unsupported WAV sample format"),  # MPEG layer 3
    # the fmt chunk's size past the end of the file: was a catch-all UnboundLocalError naming no file
    ("fmt_size.wav", 16, "<I", 10**6, "truncated or corrupt WAV file (its 'fmt' chunk claims 1000000 bytes"),
    # the data chunk's: read_wav read the samples there, vocode refused it (`mmap length is greater ...`)
    ("data_size.wav", 40, "<I", 10**6, "truncated WAV file (its data chunk claims 1000000 bytes"),
])
def test_a_wav_header_that_lies_is_one_line_naming_the_file(name, offset, fmt, value, fragment, cli_run, speech_run,
                                                            tmp_path):
    """Row 80: headers lying about size, rate, byte rate, block align, format; read for training and vocoded."""
    path = lying(tmp_path / name, offset, fmt, value)
    with pytest.raises(DataError) as err:
        read_wav(path)
    assert str(path) in str(err.value) and fragment in str(err.value) and "\n" not in str(err.value)
    assert_one_line_error(cli_run("vocode", speech_run, path, "-o", tmp_path / "o.wav"), name, fragment)
    assert not (tmp_path / "o.wav").exists()


def test_a_wav_whose_chunk_runs_past_the_end_is_skipped_and_counted_in_a_folder_and_one_line_alone(tmp_path,
                                                                                                      caplog):
    """Row 80: a fmt chunk whose size runs past the end of the file (was: a catch-all UnboundLocalError that
    refused the whole folder in training and data pack), and a data chunk claiming more than the file holds
    (was: read by training and data pack, refused by vocode): skipped and counted like other truncated clips,
    and refused alike by read_wav and by vocode's reader."""
    folder = tmp_path / "wavs"
    folder.mkdir()
    for i in range(2):
        write_wav(folder / f"ok{i}.wav", 0.1 * np.sin(np.arange(SR) * 0.05), SR)
    bad = [lying(folder / "fmt_size.wav", 16, "<I", 10**6), lying(folder / "data_size.wav", 40, "<I", 10**6)]
    with caplog.at_level(logging.WARNING, logger="mmgan"):
        dataset = WavFolderDataset(folder, segment_length=2048)
    assert dataset.skip_counts["unreadable"] == 2 and len(dataset.files) == 2
    assert "skipped 2 unreadable (first: data_size.wav: " in caplog.text and "2 of 4 files used" in caplog.text
    manifest = pack(SpeechCodec(2048, SR), "speech", str(folder), tmp_path / "packed", progress=False)
    assert manifest["count"] == 2
    for path, fragment in zip(bad, ("its 'fmt' chunk claims", "its data chunk claims"), strict=True):
        for read in (read_wav, WavBlocks, read_mel_input):
            with pytest.raises(DataError) as err:
                read(path)
            message = str(err.value)
            assert message.startswith(f"{path}: truncated") and fragment in message and "\n" not in message


# ---- generate ---------------------------------------------------------------------------------------------

def test_generate_refuses_a_negative_count_and_writes_to_an_existing_file_or_a_name_without_suffix(
        cli_run, image_run, tmp_path):
    """Row 84: -n -1; -o an existing file (replaced by the grid); -o a name without suffix (.png is added,
    as `-o /dev/full` wrote /dev/full.png)."""
    assert_one_line_error(cli_run("generate", image_run, "-n", "-1", "-o", tmp_path / "g.png"),
                          "-n must be positive, got -1")
    (tmp_path / "old.png").write_text("not a picture")
    result = cli_run("generate", image_run, "-n", "4", "-o", tmp_path / "old.png")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "old.png") as grid:
        assert grid.format == "PNG"
    result = cli_run("generate", image_run, "-n", "4", "-o", tmp_path / "grid")
    assert result.exit_code == 0 and f"wrote {tmp_path / 'grid.png'}" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "old.png"]


# ---- data pack and shards ---------------------------------------------------------------------------------

def test_data_pack_edge_cases_are_one_line_or_skip_and_leave_nothing_behind(cli_run, tmp_path, caplog):
    """Row 87: OUT a file, --limit 0, a folder with corrupt images, an interrupted pack (an existing
    directory: tests/test_shards.py)."""
    (tmp_path / "file").write_text("mine\n")
    assert_one_line_error(cli_run("data", "pack", "builtin:shapes", tmp_path / "file", "--modality", "image",
                                  "--no-progress"), "file exists and is")
    assert (tmp_path / "file").read_text() == "mine\n"
    assert_one_line_error(cli_run("data", "pack", "builtin:shapes", tmp_path / "zero", "--modality", "image",
                                  "--limit", "0", "--no-progress"), "--limit must be positive, got 0")
    assert not (tmp_path / "zero").exists()
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (60 * i, 0, 0)).save(folder / f"ok{i}.png")
    (folder / "bad.png").write_bytes(b"\x89PNG not really")
    (folder / "zero.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="mmgan"):
        assert pack(ImageCodec(32), "image", str(folder), tmp_path / "packed", progress=False)["count"] == 3
    assert "skipped 2 of 5 files" in caplog.text

    class Interrupted(ImageCodec):
        def pack(self, source, seed, limit):
            stream = super().pack(source, seed, limit)
            good = stream.samples

            def stopped():
                yield from (sample for _, sample in zip(range(7), good, strict=False))
                raise KeyboardInterrupt
            stream.samples = stopped()
            return stream

    with pytest.raises(KeyboardInterrupt):
        pack(Interrupted(32), "image", "builtin:shapes", tmp_path / "cut", shard_size=5, limit=20, progress=False)
    assert not (tmp_path / "cut").exists()


def test_data_pack_into_an_existing_file_says_it_is_a_file(tmp_path):
    """Row 87: OUT an existing file was refused in the run directory's words (`run directory OUT exists and is
    not a directory`); the pack says what OUT is to it."""
    (tmp_path / "file").write_text("mine\n")
    for check in (check_pack_output, lambda out: pack(ImageCodec(32), "image", "builtin:shapes", out, limit=2,
                                                      progress=False)):
        with pytest.raises(DataError) as err:
            check(tmp_path / "file")
        assert str(err.value) == f"{tmp_path / 'file'} exists and is a file; choose a new output directory"
    assert (tmp_path / "file").read_text() == "mine\n"


def test_the_data_pack_command_into_an_existing_file_says_it_is_a_file(cli_run, tmp_path):
    """Row 87, through the CLI (it said `run directory OUT exists and is not a directory`)."""
    (tmp_path / "file").write_text("mine\n")
    assert_one_line_error(cli_run("data", "pack", "builtin:shapes", tmp_path / "file", "--modality", "image",
                                  "--no-progress"), "file exists and is a file; choose a new output directory")


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (9, 9, 9)).save(buffer, "PNG")
    return buffer.getvalue()


def test_shard_members_that_name_other_paths_write_nothing_and_only_images_are_read(tmp_path, monkeypatch, caplog):
    """Row 88: members named ../ and absolute, a symbolic and a hard link, a device, a corrupt PNG."""
    here = tmp_path / "a" / "b"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)  # ../../escaped.png would be tmp_path/escaped.png
    shard = tmp_path / "evil-000000.tar"
    with tarfile.open(shard, "w") as tar:
        def add(name: str, data: bytes | None = None, **fields) -> None:
            info = tarfile.TarInfo(name)
            for key, value in fields.items():
                setattr(info, key, value)
            info.size = len(data) if data is not None else 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        add("../../escaped.png", _png())
        add(str(tmp_path / "absolute.png"), _png())
        add("link.png", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        add("hard.png", type=tarfile.LNKTYPE, linkname="/etc/passwd")
        add("device.png", type=tarfile.CHRTYPE, devmajor=1, devminor=7)
        add("corrupt.png", b"\x89PNG not really")
        for i in range(4):
            add(f"{i:08d}.png", _png())
    shards = open_shards(str(shard))
    assert shards.counts == (7,)  # the regular members; the links and the device are not samples
    stream = ShardStream(shards, ImageCodec(32), seed=0, shuffle_buffer=1)
    with caplog.at_level(logging.WARNING, logger="mmgan"):
        samples = [s for _, s in zip(range(20), stream, strict=False)]
    assert len(samples) == 20 and all(s.shape == (3, 32, 32) for s in samples)
    assert all(torch.allclose(s, samples[0]) for s in samples)  # the PNGs' grey, nothing of /etc/passwd
    assert "'corrupt' cannot be decoded" in caplog.text
    assert not any(name in caplog.text for name in ("'link'", "'hard'", "'device'", "passwd"))
    assert not (tmp_path / "escaped.png").exists() and not (tmp_path / "absolute.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "evil-000000.tar"]


# ---- crafted inputs ---------------------------------------------------------------------------------------

def test_a_malicious_inception_pickle_runs_no_code_and_export_json_paths_write_nothing(cli_run, image_run, tmp_path):
    """Row 89: a pickle as the FID Inception weights; an export JSON whose modality names another path (bad
    types, a removed checksum and deep nesting: tests/test_catalogue.py, tests/test_faults.py)."""
    marker = tmp_path / "pwned"
    (tmp_path / "inception.pth").write_bytes(pickle.dumps(Evil(marker)))
    with pytest.raises(MetricError, match="inception.pth cannot be read"):
        load_fid_inception(tmp_path / "inception.pth")
    assert not marker.exists()
    run = copy_run(image_run, tmp_path)
    meta = run / "export" / "image.json"
    values = json.loads(meta.read_text())
    values["modality"] = str(tmp_path / "elsewhere" / "x")
    meta.write_text(json.dumps(values))
    assert cli_run("generate", run, "-n", "4", "-o", tmp_path / "g.png").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png", "inception.pth", "run"]


def test_symbolic_links_in_a_run_keep_their_targets(cli_run, tmp_path):
    """Row 90: --out a link to a directory; a checkpoint and samples/ links, through rotation and --overwrite."""
    (tmp_path / "real").mkdir()
    link = tmp_path / "link"
    link.symlink_to("real")
    extra = ("train.checkpoint_every=1", "train.keep_checkpoints=1")
    assert cli_run("run", "--plugin", "image", *tiny_args(link, steps=1, extra=extra)).exit_code == 0
    assert link.is_symlink() and (tmp_path / "real" / "checkpoints" / "step_000001").is_dir()
    kept = tmp_path / "kept_checkpoint"
    shutil.move(tmp_path / "real" / "checkpoints" / "step_000001", kept)
    (tmp_path / "real" / "checkpoints" / "step_000001").symlink_to(kept)
    mine = tmp_path / "my_samples"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    shutil.rmtree(tmp_path / "real" / "samples")
    (tmp_path / "real" / "samples").symlink_to(mine)
    files = sorted(p.name for p in kept.iterdir())
    assert cli_run("run", "--resume", link, "--steps", "2").exit_code == 0  # rotation keeps one checkpoint
    assert sorted(p.name for p in kept.iterdir()) == files
    assert (mine / "notes.txt").read_text() == "mine\n"
    # --overwrite removes the links themselves (it stopped at the samples/ link after removing checkpoints/)
    result = cli_run("run", "--plugin", "image", *tiny_args(link, steps=1), "--overwrite")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in kept.iterdir()) == files
    assert (mine / "notes.txt").read_text() == "mine\n"
    assert not (tmp_path / "real" / "samples").is_symlink() and (tmp_path / "real" / "export").is_dir()

