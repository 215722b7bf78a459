"""The rows of the fault catalogue (docs/reliability.md) that no other test kept: one test per row or group.

Each docstring names its rows. The rows kept elsewhere are listed with their tests in docs/reliability.md.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import SPEECH_TINY, TINY, TINY_CORE, assert_one_line_error, read_metrics, tiny_args
from PIL import Image

from mmgan import checkpoint
from mmgan import config as cfg
from mmgan.contract.manager import get_modality
from mmgan.data.shards import ShardStream, open_shards, pack
from mmgan.engine import Trainer
from mmgan.engine.rundir import RunDirectory
from mmgan.errors import ConfigError
from mmgan_image.datasets import ImageFolderDataset
from mmgan_image.shards import ImageCodec
from mmgan_speech.audio import read_wav, write_wav
from mmgan_speech.datasets import WavFolderDataset

ROOT = Path(__file__).resolve().parent.parent
SR = 22050


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    """A finished tiny image run; tests that damage it work on a copy."""
    run = tmp_path_factory.mktemp("image") / "run"
    Trainer(cfg.resolve(get_modality, plugins=["image"], out=run, steps=1, batch_size=8, overrides=TINY),
            progress=False).fit()
    return run


@pytest.fixture(scope="module")
def speech_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("speech") / "run"
    Trainer(cfg.resolve(get_modality, plugins=["speech"], out=run, steps=1, batch_size=2,
                        overrides=[*TINY_CORE, *SPEECH_TINY]), progress=False).fit()
    return run


def copy_run(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def resolve(**kwargs) -> cfg.RunConfig:
    return cfg.resolve(get_modality, **{"plugins": ["image"], "out": "runs/x", **kwargs})


def tone(samples: int, rate: int = SR) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * 220 * np.arange(samples) / rate)


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header for a width x height RGB image, with almost no pixel data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(
        b"IEND", b"")


class Evil:
    """A pickle that would create ``marker`` if anything unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def mount_read_only(path: Path) -> bool:
    """A read-only tmpfs at ``path`` (root only); False where this machine does not allow it."""
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


# ---- arguments and config ---------------------------------------------------------------------------------

def test_a_huge_step_count_is_accepted_and_survives_the_saved_config(tmp_path):
    """Row 2: --steps 10**21 is a valid (if endless) run; its config.toml reads back the same, so the
    checkpoint a signal writes (tests/test_faults.py) can be resumed."""
    config = resolve(steps=10**21)
    path = tmp_path / "config.toml"
    path.write_text(cfg.to_toml(config))
    assert cfg.resolve(get_modality, config_file=path).train.steps == 10**21


@pytest.mark.parametrize("override, fragment", [
    ("train.lr_g=nan", "train.lr_g must be a positive number, got nan"),
    ("train.lr_d=inf", "train.lr_d must be a positive number, got inf"),
    ("image.nz=inf", "image.nz: expected an integer, got 'inf'"),
])
def test_non_finite_numbers_are_refused_naming_the_key(override, fragment):
    """Row 4 (nan, inf; the other values are in tests/test_config.py)."""
    with pytest.raises(ConfigError, match=fragment):
        resolve(overrides=[override])


def test_the_same_plugin_twice_is_one_modality():
    """Row 6."""
    assert resolve(plugins=["image", "image"]).run.modalities == ["image"]


def test_speech_on_an_image_folder_is_one_line(cli_run, tmp_path):
    """Row 7."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    Image.new("RGB", (32, 32)).save(folder / "a.png")
    assert_one_line_error(cli_run("run", "--plugin", "speech", "--data", folder, "--out", tmp_path / "r",
                                  "--steps", "1", "--no-progress"), "no .wav files", str(folder))
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("data", ["/some/folder", "video=x", "="])
def test_data_without_a_modality_of_the_run_is_refused_with_two_modalities(data):
    """Row 8."""
    with pytest.raises(ConfigError, match="with several modalities write MODALITY=SOURCE"):
        resolve(plugins=["image", "speech"], data=[data])


def test_data_naming_no_source_is_one_line(cli_run, tmp_path):
    """Row 8: ``image=`` leaves the modality without data."""
    assert_one_line_error(cli_run("run", "--plugin", "image", "--data", "image=", *tiny_args(tmp_path / "r")),
                          "no data source for modality 'image'")
    assert not (tmp_path / "r").exists()


def test_a_config_file_that_is_not_utf8_or_of_another_modality_is_one_line(tmp_path):
    """Rows 24 (non-UTF-8) and 26 (a speech config.toml with --plugin image)."""
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b"[train]\nsteps = 3 # caf\xe9\n")
    with pytest.raises(ConfigError, match="latin1.toml is not valid TOML") as err:
        resolve(config_file=latin1)
    assert "\n" not in str(err.value)
    speech = tmp_path / "speech.toml"
    speech.write_text(cfg.to_toml(cfg.resolve(get_modality, plugins=["speech"], out="runs/s")))
    with pytest.raises(ConfigError, match="speech.toml: unknown config section 'speech'"):
        cfg.resolve(get_modality, plugins=["image"], config_file=speech)


# ---- output directories -----------------------------------------------------------------------------------

def test_read_only_outputs_are_one_line_and_eval_keeps_its_metrics(cli_run, image_run, tmp_path):
    """Rows 11 and 47 on a real read-only mount: run --out, generate -o, eval --out."""
    mount = tmp_path / "ro"
    if not mount_read_only(mount):
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        assert_one_line_error(cli_run("run", "--plugin", "image", *tiny_args(mount / "run")),
                              f"{mount / 'run'}", "Read-only file system")
        assert_one_line_error(cli_run("generate", image_run, "-o", mount / "g.png"), "Read-only file system")
        result = cli_run("eval", image_run, "-n", "130", "--out", mount / "e.json")
        assert_one_line_error(result, "e.json", "Read-only file system")
        assert not list(mount.iterdir())
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_vocode_to_a_read_only_mount_is_one_line_without_a_traceback(cli_run, speech_run, tmp_path, monkeypatch):
    mount = tmp_path / "ro"
    if not mount_read_only(mount):
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    unraisable = []  # what Python would print as "Exception ignored in ...", with a traceback
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    try:
        np.save(tmp_path / "mel.npy", np.full((80, 8), -5.0, np.float32))
        result = cli_run("vocode", speech_run, tmp_path / "mel.npy", "-o", mount / "o.wav")
        assert_one_line_error(result, "o.wav", "Read-only file system")
        del result  # its traceback holds the half-built writer: freeing it is when Python prints the traceback
        gc.collect()
        assert not unraisable, [str(u.exc_value) for u in unraisable]
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_readers_never_wait_for_the_run_directory_lock(cli_run, image_run, tmp_path):
    """docs/reliability.md: generate, eval and report work while a run holds its directory."""
    holder = RunDirectory(image_run)
    holder.lock()  # as a training `mmgan run` does
    try:
        assert cli_run("generate", image_run, "-n", "4", "-o", tmp_path / "g.png").exit_code == 0
        result = cli_run("eval", image_run, "-n", "130", "--out", tmp_path / "e.json")
        assert result.exit_code == 0, result.output
        result = cli_run("report", image_run, "-o", tmp_path / "report")
        assert result.exit_code == 0 or "mmgan[report]" in result.output, result.output
    finally:
        holder.unlock()


# ---- image folders ----------------------------------------------------------------------------------------

def test_images_smaller_than_the_training_size_are_counted_in_one_warning(tmp_path, caplog):
    """Row 16: upscaled, with one warning naming how many and the smallest."""
    for i in range(3):
        Image.new("RGB", (1, 1), (40 * i, 0, 0)).save(tmp_path / f"dot{i}.png")
    Image.new("RGB", (20, 50)).save(tmp_path / "narrow.png")
    Image.new("RGB", (40, 40)).save(tmp_path / "big.png")
    with caplog.at_level(logging.WARNING, logger="mmgan"):
        dataset = ImageFolderDataset(tmp_path, size=32)
    assert dataset[0].shape == (3, 32, 32)
    warnings = [r.getMessage() for r in caplog.records if r.name == "mmgan"]
    assert warnings == [f"4 of 5 images in {tmp_path} have a side shorter than 32 px and are upscaled "
                        "(smallest: dot0.png, 1x1)"]


def test_a_decompression_bomb_is_skipped_without_decoding_it(tmp_path, caplog):
    """Row 17: a PNG header claiming 60000x60000 is left out at the header check."""
    for i in range(2):
        Image.new("RGB", (32, 32), (40 * i, 0, 0)).save(tmp_path / f"ok{i}.png")
    (tmp_path / "bomb.png").write_bytes(png_claiming(60000, 60000))
    with caplog.at_level(logging.WARNING, logger="mmgan"):
        dataset = ImageFolderDataset(tmp_path, size=32)
    assert len(dataset) == 2
    assert [p.name for p, _ in dataset.skipped] == ["bomb.png"]
    assert "decompression bomb" in dataset.skipped[0][1]


def test_symlink_loops_and_non_utf8_names_neither_hang_nor_fail(tmp_path):
    """Row 19: reading the folder and packing it."""
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (32, 32), (40 * i, 0, 0)).save(folder / f"ok{i}.png")
    (folder / "sub" / "loop").symlink_to("..")
    (folder / "self").symlink_to("self")
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not UTF-8
    Image.new("RGB", (32, 32)).save(folder / name)
    dataset = ImageFolderDataset(folder, size=32)
    assert name in [p.name for p in dataset.files]
    assert all(dataset[i].shape == (3, 32, 32) for i in range(len(dataset)))
    manifest = pack(ImageCodec(32), "image", str(folder), tmp_path / "shards", shard_size=100, progress=False)
    assert manifest["count"] == len(dataset)


# ---- speech data ------------------------------------------------------------------------------------------

def test_ljspeech_metadata_listing_missing_wavs_skips_and_warns(tmp_path, caplog):
    """Row 23."""
    (tmp_path / "wavs").mkdir()
    for i in range(2):
        write_wav(tmp_path / "wavs" / f"LJ{i}.wav", tone(3000), SR)
    (tmp_path / "metadata.csv").write_text("".join(f"LJ{i}|text|text\n" for i in range(4)))
    with caplog.at_level(logging.WARNING, logger="mmgan"):
        dataset = WavFolderDataset(tmp_path, segment_length=1024)
    assert [p.name for p in dataset.files] == ["LJ0.wav", "LJ1.wav"]
    assert "skipped 2 unreadable (first: wavs/LJ2.wav" in caplog.text and "no such file" in caplog.text


# ---- checkpoints and exports ------------------------------------------------------------------------------

CHECKPOINT_FILES = ["model.safetensors", "model_1.safetensors", "optimizer.bin", "optimizer_1.bin",
                    "random_states_0.pkl", checkpoint.STATE_FILE, checkpoint.PROGRESS_FILE]


@pytest.mark.parametrize("name", CHECKPOINT_FILES)
def test_a_malicious_pickle_in_a_checkpoint_runs_no_code(name, cli_run, image_run, tmp_path):
    """Rows 30, 31, 32: every file of a checkpoint; --resume is one line and nothing is unpickled."""
    run = copy_run(image_run, tmp_path)
    marker = tmp_path / "pwned"
    (checkpoint.checkpoint_dirs(run)[-1] / name).write_bytes(pickle.dumps(Evil(marker)))
    assert_one_line_error(cli_run("run", "--resume", run, "--steps", "2"), "step_000001")
    assert not marker.exists()


def test_a_malicious_pickle_as_an_export_runs_no_code(cli_run, image_run, speech_run, tmp_path):
    """Row 32: generate, eval, --init-trunk and vocode read exports without unpickling."""
    run = copy_run(image_run, tmp_path)
    marker = tmp_path / "pwned"
    (run / "export" / "image.safetensors").write_bytes(pickle.dumps(Evil(marker)))
    assert_one_line_error(cli_run("generate", run, "-o", tmp_path / "g.png"), "corrupt")
    assert_one_line_error(cli_run("eval", run, "-n", "130", "--out", tmp_path / "e.json"), "corrupt")
    assert_one_line_error(cli_run("run", "--plugin", "image", *tiny_args(tmp_path / "init"), "--init-trunk", run),
                          "corrupt")
    speech = Path(shutil.copytree(speech_run, tmp_path / "speech"))
    (speech / "export" / "speech.safetensors").write_bytes(pickle.dumps(Evil(marker)))
    np.save(tmp_path / "mel.npy", np.full((80, 8), -5.0, np.float32))
    assert_one_line_error(cli_run("vocode", speech, tmp_path / "mel.npy", "-o", tmp_path / "o.wav"), "corrupt")
    assert not marker.exists()


def test_an_export_json_with_a_wrong_type_is_one_line(cli_run, image_run, tmp_path):
    """Row 33: nz = "abc" (truncated weights and broken JSON are in tests/test_engine.py and test_cli.py)."""
    run = copy_run(image_run, tmp_path)
    meta = run / "export" / "image.json"
    values = json.loads(meta.read_text())
    values["config"]["nz"] = "abc"
    meta.write_text(json.dumps(values))
    assert_one_line_error(cli_run("generate", run, "-o", tmp_path / "g.png"), "image.json: nz: expected an integer")


def test_flipped_bytes_in_the_export_weights_are_detected(cli_run, image_run, tmp_path):
    """Row 34: the export's JSON holds its weights' SHA-256, so damaged weights are a one-line error."""
    run = copy_run(image_run, tmp_path)
    weights = run / "export" / "image.safetensors"
    data = bytearray(weights.read_bytes())
    start = 8 + struct.unpack("<Q", data[:8])[0]  # after the safetensors header: tensor bytes only
    for i in np.random.default_rng(0).choice(np.arange(start, len(data)), 2000, replace=False):
        data[i] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert_one_line_error(cli_run("generate", run, "-n", "4", "-o", tmp_path / "g.png", "--last"),
                          "image.safetensors does not match the checksum in image.json")
    assert not (tmp_path / "g.png").exists()


def test_resume_with_other_network_sizes_names_the_first_mismatch(cli_run, image_run, tmp_path):
    """Row 36."""
    run = copy_run(image_run, tmp_path)
    assert_one_line_error(cli_run("run", "--resume", run, "--steps", "2", "--set", "image.ngf=32"),
                          "size mismatch for heads.image.", "from checkpoint", "more)",
                          "were network sizes changed (--set)")


# ---- vocode -----------------------------------------------------------------------------------------------

def save_object_array(path: Path) -> None:
    np.save(path, np.array([[None] * 4] * 80, dtype=object), allow_pickle=True)


@pytest.mark.parametrize("name, write, fragment", [
    ("3d.npy", lambda p: np.save(p, np.zeros((1, 80, 4), np.float32)), "(80, frames)"),
    ("1d.npy", lambda p: np.save(p, np.zeros(80, np.float32)), "(80, frames)"),
    ("complex.npy", lambda p: np.save(p, np.zeros((80, 4), np.complex64)), "float array"),
    ("nan.npy", lambda p: np.save(p, np.full((80, 4), np.nan, np.float32)), "NaN or infinite"),
    ("inf.npy", lambda p: np.save(p, np.full((80, 4), -np.inf, np.float32)), "NaN or infinite"),
    ("empty.npy", lambda p: np.save(p, np.zeros((80, 0), np.float32)), "no frames"),
    # faults row 83: one frame was a catch-all RuntimeError (padding) from the vocos head
    ("one.npy", lambda p: np.save(p, np.zeros((80, 1), np.float32)), "1 frame; vocoding needs at least 2"),
    ("object.npy", save_object_array, "not a readable .npy array"),
    ("huge.npy", lambda p: np.save(p, np.full((80, 4), 1e30)), "must lie in [-100, 100]"),
    ("picture.png", lambda p: Image.new("RGB", (8, 8)).save(p), "not a WAV file"),
    ("missing.wav", lambda p: None, "no such file"),
])
def test_bad_vocode_inputs_are_one_line_naming_the_file(name, write, fragment, cli_run, speech_run, tmp_path):
    """Rows 43, 44 (1e30: names the value range), 45 (the others are in tests/test_speech_plugin.py)."""
    write(tmp_path / name)
    result = cli_run("vocode", speech_run, tmp_path / name, "-o", tmp_path / "o.wav")
    assert_one_line_error(result, name, fragment)
    assert not (tmp_path / "o.wav").exists()
    if name == "huge.npy":
        assert "got 1e+30 to 1e+30" in result.output


def test_vocode_options_and_runs_that_cannot_vocode_are_one_line(cli_run, speech_run, image_run, tmp_path):
    """Row 45: --chunk-frames 0, an image run."""
    np.save(tmp_path / "mel.npy", np.full((80, 8), -5.0, np.float32))
    assert_one_line_error(cli_run("vocode", speech_run, tmp_path / "mel.npy", "-o", tmp_path / "o.wav",
                                  "--chunk-frames", "0"), "--chunk-frames must be positive")
    assert_one_line_error(cli_run("vocode", image_run, tmp_path / "mel.npy", "-o", tmp_path / "o.wav"),
                          "no exported 'speech' generator", "it has image")


@pytest.mark.parametrize("name, wave, rate, seconds", [
    ("8khz.wav", tone(8000, 8000), 8000, 1.0),
    ("stereo.wav", np.stack([tone(SR), tone(SR)], axis=1), SR, 1.0),
    ("silent.wav", np.zeros(SR), SR, 1.0),
    ("50ms.wav", tone(1102), SR, 0.05),
])
def test_vocode_resamples_downmixes_and_takes_silent_and_short_input(name, wave, rate, seconds, cli_run, speech_run,
                                                                    tmp_path):
    """Row 46."""
    write_wav(tmp_path / name, wave, rate)
    result = cli_run("vocode", speech_run, tmp_path / name, "-o", tmp_path / "o.wav")
    assert result.exit_code == 0, result.output
    assert len(read_wav(tmp_path / "o.wav")) == pytest.approx(seconds * SR, abs=256)


# ---- eval, pack, shards -----------------------------------------------------------------------------------

def test_eval_of_zero_samples_or_data_of_another_kind_is_one_line(cli_run, image_run, tmp_path):
    """Row 49: -n 0, a WAV folder as the real images (-n 1 and a 5-image folder: tests/test_image_metrics.py)."""
    assert_one_line_error(cli_run("eval", image_run, "-n", "0"), "-n and --batch-size must be positive")
    (tmp_path / "wavs").mkdir()
    write_wav(tmp_path / "wavs" / "a.wav", tone(SR), SR)
    assert_one_line_error(cli_run("eval", image_run, "--data", tmp_path / "wavs", "-n", "130",
                                  "--out", tmp_path / "e.json"), "no image files", "wavs")
    assert_one_line_error(cli_run("eval", image_run, "--data", "builtin:speech", "-n", "130",
                                  "--out", tmp_path / "e.json"), "unknown built-in image source 'builtin:speech'")
    assert not (tmp_path / "e.json").exists()


@pytest.mark.parametrize("args, fragment", [
    (("--modality", "image", "--shard-size", "0"), "--shard-size must be positive, got 0"),
    (("--modality", "image", "--limit", "-5"), "--limit must be positive, got -5"),
    (("--modality", "video"), "no plugin provides modality 'video'"),
])
def test_bad_pack_options_are_one_line_and_write_nothing(args, fragment, cli_run, tmp_path):
    """Row 51 (an existing directory: tests/test_shards.py)."""
    assert_one_line_error(cli_run("data", "pack", "builtin:shapes", tmp_path / "s", *args, "--no-progress"), fragment)
    assert not (tmp_path / "s").exists()


def test_a_manifest_claiming_more_samples_than_a_shard_holds_warns_and_streams_on(tmp_path, caplog):
    """Row 52: a manifest count of 10**6."""
    out = tmp_path / "img"
    pack(ImageCodec(32), "image", "builtin:shapes", out, shard_size=10, limit=20, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"][0]["count"] = manifest["count"] = 10**6
    (out / "manifest.json").write_text(json.dumps(manifest))
    stream = ShardStream(open_shards(str(out)), ImageCodec(32), seed=0, shuffle_buffer=1)
    with caplog.at_level(logging.WARNING, logger="mmgan"):
        samples = [sample for _, sample in zip(range(30), stream, strict=False)]
    assert len(samples) == 30 and all(s.shape == (3, 32, 32) for s in samples)
    assert "ended after 10 of its 1000000 samples" in caplog.text


# ---- precision and workers --------------------------------------------------------------------------------

def test_fp16_on_a_cpu_trains(cli_run, tmp_path):
    """Row 54."""
    run = tmp_path / "run"
    result = cli_run("run", "--plugin", "image", *tiny_args(run, steps=1, extra=("train.mixed_precision=fp16",)))
    assert result.exit_code == 0, result.output
    assert np.isfinite(read_metrics(run)[-1]["image/d/adv"])


# ---- the page -------------------------------------------------------------------------------------------

def test_the_catalogue_table_has_every_row_and_names_only_tests_that_exist():
    """docs/reliability.md cannot drift from tests/: rows 1 to 92 in order, each test it names defined."""
    page = (ROOT / "docs" / "reliability.md").read_text()
    rows = [line for line in page.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [int(row.split("|")[1]) for row in rows] == list(range(1, 93))
    defined = set(re.findall(r"^def (test_\w+)", "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py")),
                             re.MULTILINE))
    named = {name for row in rows for name in re.findall(r"`(test_\w+)", row.split("|")[4])}
    assert named and not named - defined, sorted(named - defined)



def test_generate_refuses_more_samples_than_memory_holds(cli_run, image_run, tmp_path, monkeypatch):
    """Row 50: -n 10**7 is refused on the first batch, in one line, instead of filling the memory."""
    monkeypatch.setattr("mmgan.evaluation.inference.host_memory", lambda: (50 * 2**20, "MemAvailable"))
    assert_one_line_error(cli_run("generate", image_run, "-n", str(10**7), "-o", tmp_path / "g.png"),
                          "-n 10000000", "GB, more than the 52 MB available (MemAvailable)", "ask for fewer")
    assert not (tmp_path / "g.png").exists()
    assert cli_run("generate", image_run, "-n", "16", "-o", tmp_path / "g.png").exit_code == 0
