"""WebDataset shards: `mmgan data pack`, reading them back split by rank and worker, training from them."""

import io
import itertools
import json
import shutil
import tarfile

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, read_metrics, tiny_args
from torch.utils.data import DataLoader

from mmgan.data.shards import ShardStream, is_shard_source, open_shards, pack
from mmgan.engine import Trainer
from mmgan.errors import DataError
from mmgan_image.datasets import ShapesDataset
from mmgan_image.shards import ImageCodec, png_bytes
from mmgan_speech.audio import write_wav
from mmgan_speech.datasets import WavFolderDataset
from mmgan_speech.shards import SpeechCodec


@pytest.fixture(scope="module")
def image_shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("packs") / "img"
    pack(ImageCodec(32), "image", "builtin:shapes", out, shard_size=25, seed=0, limit=100, progress=False)
    return out


def take(stream, n):
    return list(itertools.islice(iter(stream), n))


def test_image_pack_writes_a_manifest_and_round_trips_losslessly(image_shards):
    manifest = json.loads((image_shards / "manifest.json").read_text())
    assert manifest["format"] == "mmgan-shards" and manifest["modality"] == "image"
    assert manifest["count"] == 100 and manifest["image_size"] == 32
    assert [s["count"] for s in manifest["shards"]] == [25, 25, 25, 25]
    assert sorted(p.name for p in image_shards.iterdir()) == [f"img-00000{i}.tar" for i in range(4)] + [
        "manifest.json"]
    # the packed set is the first 100 built-in items, shuffled: every one comes back, 8-bit exact
    dataset = ShapesDataset(32, seed=0)
    wanted = {png_bytes(dataset[i]) for i in range(100)}
    shards = open_shards(str(image_shards))
    got = take(ShardStream(shards, ImageCodec(32), seed=0, shuffle_buffer=1), 100)
    assert {png_bytes(x) for x in got} == wanted
    quantised = torch.round((dataset[0] + 1) * 127.5) / 127.5 - 1
    assert any(torch.allclose(x, quantised, atol=1e-6) for x in got)


def test_brace_pattern_selects_shards_and_counts_come_from_the_manifest(image_shards):
    shards = open_shards(str(image_shards / "img-{000001..000002}.tar"))
    assert [p.rsplit("/", 1)[1] for p in shards.urls] == ["img-000001.tar", "img-000002.tar"]
    assert shards.total == 50 and shards.manifest["modality"] == "image"
    # without a manifest the counts come from the tar headers
    lone = image_shards.parent / "lone"
    lone.mkdir()
    shutil.copy(image_shards / "img-000003.tar", lone / "x-000000.tar")
    assert open_shards(str(lone / "x-{000000..000000}.tar")).total == 25
    assert open_shards(str(lone / "x-000000.tar")).manifest is None


def test_ranks_and_workers_read_disjoint_shards_and_the_same_number_of_samples(image_shards):
    shards = open_shards(str(image_shards))
    seen = {}
    for rank in range(2):
        stream = ShardStream(shards, ImageCodec(32), seed=0, rank=rank, world_size=2)
        for worker in range(2):
            slot, urls, quota = stream.assignment(worker, 2)
            seen[slot] = set(urls)
            assert quota == 25  # 100 samples / 2 ranks / 2 workers
    assert all(len(urls) == 1 for urls in seen.values()) and len(set.union(*seen.values())) == 4

    # through a real DataLoader with 2 worker processes: each rank gets 50 samples an epoch (every sample of
    # its two shards once) and the two ranks' samples do not overlap
    per_rank = []
    for rank in range(2):
        stream = ShardStream(shards, ImageCodec(32), seed=0, rank=rank, world_size=2, shuffle_buffer=8)
        loader = DataLoader(stream, batch_size=5, num_workers=2)
        batches = list(itertools.islice(iter(loader), 10))
        per_rank.append({png_bytes(x) for b in batches for x in b})
    assert len(per_rank[0]) == len(per_rank[1]) == 50
    assert not per_rank[0] & per_rank[1]


def test_uneven_shards_are_resampled_to_a_fixed_epoch_length(tmp_path):
    out = tmp_path / "uneven"
    pack(ImageCodec(32), "image", "builtin:shapes", out, shard_size=30, seed=0, limit=70, progress=False)
    shards = open_shards(str(out))
    assert shards.counts == (30, 30, 10)
    # 3 ranks: 24 samples each per epoch although rank 2 owns only the 10-sample shard (resampled)
    for rank in range(2):
        stream = ShardStream(shards, ImageCodec(32), seed=0, rank=rank, world_size=3)
        assert stream.assignment(0, 1)[2] == 24
    stream = ShardStream(shards, ImageCodec(32), seed=0, rank=2, world_size=3, shuffle_buffer=4)
    assert len(take(stream, 60)) == 60  # 24 per epoch from a 10-sample shard, and it never ends


def test_stream_order_is_a_function_of_the_seed_and_resumes_exactly(image_shards):
    shards = open_shards(str(image_shards))

    def first(seed, start=0, n=30):
        stream = ShardStream(shards, ImageCodec(32), seed=seed, shuffle_buffer=16)
        stream.set_start(start, 4)
        return take(stream, n)

    a, b, c = first(0), first(0), first(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))
    # starting after 3 batches of 4 continues the same sequence
    assert all(torch.equal(x, y) for x, y in zip(a[12:], first(0, start=3, n=18), strict=True))
    # and across an epoch boundary (100 samples an epoch): 26 batches of 4 = 104 samples in
    long = first(0, n=120)
    assert all(torch.equal(x, y) for x, y in zip(long[104:], first(0, start=26, n=16), strict=True))


def corrupt_copy(src, dst, bad_member):
    """Copy a tar, replacing one member's bytes with garbage of the same name."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for member in tin:
            data = tin.extractfile(member).read()
            if member.name == bad_member:
                data = b"this is not a png"
            member.size = len(data)
            tout.addfile(member, io.BytesIO(data))


def test_a_corrupt_member_is_skipped_and_counted(image_shards, tmp_path, caplog):
    out = tmp_path / "bad"
    out.mkdir()
    manifest = json.loads((image_shards / "manifest.json").read_text())
    manifest["shards"] = manifest["shards"][:1]
    (out / "manifest.json").write_text(json.dumps(manifest))
    with tarfile.open(image_shards / "img-000000.tar") as tar:
        victim = tar.getnames()[3]
    corrupt_copy(image_shards / "img-000000.tar", out / "img-000000.tar", victim)
    stream = ShardStream(open_shards(str(out)), ImageCodec(32), seed=0, shuffle_buffer=1)
    with caplog.at_level("WARNING", logger="mmgan"):
        got = take(stream, 30)
    assert len(got) == 30 and stream.skipped >= 1
    assert victim.split(".")[0] in caplog.text and "skipped so far" in caplog.text

    # a shard cut short: what was readable is used, the rest counted, and the stream goes on
    data = (image_shards / "img-000001.tar").read_bytes()
    (out / "img-000000.tar").write_bytes(data[: len(data) // 2 + 100])
    stream = ShardStream(open_shards(str(out)), ImageCodec(32), seed=0, shuffle_buffer=1)
    assert len(take(stream, 40)) == 40 and stream.skipped >= 1


def test_speech_pack_keeps_whole_clips_and_crops_a_fresh_window_each_read(tmp_path):
    folder = tmp_path / "wavs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    clips = {f"c{i}": 0.5 * np.sin(np.arange(3000 + 1000 * i) * (0.01 + 0.01 * i)) for i in range(3)}
    for name, wave in clips.items():
        write_wav(folder / f"{name}.wav", wave, 22050)
    write_wav(folder / "quiet.wav", rng.normal(0, 1e-6, 4000), 22050)  # silent: skipped when packing
    codec = SpeechCodec(segment_length=2048, sample_rate=22050)
    manifest = pack(codec, "speech", str(folder), tmp_path / "sp", shard_size=2, progress=False)
    assert manifest["count"] == 3 and manifest["sample_rate"] == 22050 and len(manifest["shards"]) == 2

    dataset = WavFolderDataset(folder, 2048)
    whole = {dataset.clip_name(c): dataset.clip_wave(c) for c in range(3)}
    with tarfile.open(tmp_path / "sp" / "sp-000000.tar") as tar:
        names = [json.loads(tar.extractfile(m).read())["name"] for m in tar if m.name.endswith(".json")]
    assert set(names) <= set(whole)
    stream = ShardStream(open_shards(str(tmp_path / "sp")), codec, seed=0, shuffle_buffer=1)
    windows = take(stream, 12)
    assert all(w.shape == (1, 2048) for w in windows)
    # every window is a stretch of one of the packed clips (to 16-bit precision: written as x * 32767, read
    # as int / 32768) ...
    for w in windows:
        assert any(np.abs(np.lib.stride_tricks.sliding_window_view(clip, 2048) - w[0].numpy()).max(axis=1).min()
                   < 4.0 / 32768 for clip in whole.values())
    # ... and the same clip gives different windows in different epochs
    assert len({tuple(w[0, :4].tolist()) for w in windows}) > 3


def test_bad_shard_sources_are_one_line_errors(image_shards, tmp_path, cli_run):
    with pytest.raises(DataError, match="matches no files"):
        open_shards(str(tmp_path / "none-{000000..000003}.tar"))
    with pytest.raises(DataError, match="1 of its 2 shards do not exist"):
        open_shards(str(image_shards / "img-{000003..000004}.tar"))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.json").write_text(json.dumps({"format": "mmgan-shards", "modality": "image", "shards": []}))
    with pytest.raises(DataError, match="lists no shards"):
        open_shards(str(empty))
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(image_shards / "img-000000.tar", half / "img-000000.tar")
    with pytest.raises(DataError, match="no manifest.json"):
        open_shards(str(half))
    assert is_shard_source(str(half))
    (half / "photo.png").write_bytes(png_bytes(torch.zeros(3, 8, 8)))
    assert not is_shard_source(str(half))  # an image folder with a stray tar in it is still an image folder

    # shards of another modality, through the CLI
    assert_one_line_error(cli_run("run", "--plugin", "speech", "--data", image_shards, "--out", tmp_path / "r",
                                  "--steps", "1", "--no-progress"), "hold 'image' samples", "not 'speech'")
    assert not (tmp_path / "r").exists()
    assert_one_line_error(cli_run("run", "--plugin", "image", "--data", tmp_path / "x-{0..3}.tar",
                                  *tiny_args(tmp_path / "r2")), "matches no files")


def test_a_manifest_naming_a_shard_outside_its_directory_is_refused(image_shards, tmp_path):
    # faults row 88: `../other/x.tar` was read as a shard and `/etc/passwd` opened as a tar (a warning each epoch)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(image_shards / "img-000000.tar", other / "x.tar")
    here = tmp_path / "here"
    here.mkdir()
    (here / "link").symlink_to(other, target_is_directory=True)
    (here / "linked.tar").symlink_to(other / "x.tar")
    shutil.copy(image_shards / "img-000001.tar", here / "own.tar")
    manifest = json.loads((image_shards / "manifest.json").read_text())
    for name, says in (("../other/x.tar", "is outside the manifest's directory"),
                       ("/etc/passwd", "is outside the manifest's directory"),
                       (str(other / "x.tar"), "is outside the manifest's directory"),
                       ("link/x.tar", f"resolves to {(other / 'x.tar').resolve()}, outside"),
                       ("linked.tar", "outside the manifest's directory (a symbolic link)"),
                       (7, "is not a file name")):
        manifest["shards"] = [{"name": "own.tar", "count": 25}, {"name": name, "count": 25}]
        (here / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(DataError) as err:
            open_shards(str(here))
        assert str(err.value).startswith(f"{here / 'manifest.json'}: shard entry {name!r} "), str(err.value)
        assert says in str(err.value) and "\n" not in str(err.value)
    manifest["shards"] = [{"name": "own.tar", "count": 25}]
    (here / "manifest.json").write_text(json.dumps(manifest))
    assert open_shards(str(here)).urls == (str(here / "own.tar"),)


def test_pack_refuses_to_overwrite_and_leaves_no_partial_shard(image_shards, tmp_path, cli_run):
    before = sorted(p.name for p in image_shards.iterdir())
    assert_one_line_error(cli_run("data", "pack", "builtin:shapes", image_shards, "--modality", "image"),
                          "not an empty directory")
    assert sorted(p.name for p in image_shards.iterdir()) == before

    class Failing(ImageCodec):
        def pack(self, source, seed, limit):
            stream = super().pack(source, seed, limit)
            good = stream.samples

            def broken():
                yield from itertools.islice(good, 7)
                raise OSError("disk full")
            stream.samples = broken()
            return stream

    with pytest.raises(OSError, match="disk full"):
        pack(Failing(32), "image", "builtin:shapes", tmp_path / "f", shard_size=5, limit=20, progress=False)
    # a failed pack leaves nothing: neither the complete first shard nor the half-written second, and the
    # directory it created is gone (issue 12: partial files are removed on failure)
    assert not (tmp_path / "f").exists()
    (tmp_path / "g").mkdir()
    with pytest.raises(OSError, match="disk full"):
        pack(Failing(32), "image", "builtin:shapes", tmp_path / "g", shard_size=5, limit=20, progress=False)
    assert (tmp_path / "g").is_dir() and not list((tmp_path / "g").iterdir())  # the user's directory stays


def test_cli_packs_then_trains_and_resumes_from_shards(tmp_path, cli_run):
    result = cli_run("data", "pack", "builtin:shapes", tmp_path / "img", "--modality", "image", "--shard-size", "20",
                     "--limit", "60", "--set", "image.image_size=32", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "wrote 60 image samples in 3 shards" in result.output
    args = ["--plugin", "image", "--data", str(tmp_path / "img" / "img-{000000..000002}.tar")]
    extra = ("train.checkpoint_every=2", "train.sample_every=100")
    result = cli_run("run", *args, *tiny_args(tmp_path / "full", steps=5, extra=extra))
    assert result.exit_code == 0, result.output
    result = cli_run("run", *args, *tiny_args(tmp_path / "broken", steps=3, extra=extra))
    assert result.exit_code == 0, result.output
    shutil.rmtree(tmp_path / "broken" / "checkpoints" / "step_000003")  # the latest is step 2's now
    result = cli_run("run", "--resume", tmp_path / "broken", "--steps", "5", "--no-progress")
    assert result.exit_code == 0, result.output
    full, resumed = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "broken")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5]
    for a, b in zip(full, resumed, strict=True):
        assert a["image/d/adv"] == pytest.approx(b["image/d/adv"], rel=1e-5)


def test_trainer_reads_shards_with_worker_processes(image_shards, tiny_config, tmp_path):
    config = tiny_config(tmp_path / "w", steps=3, extra=("train.num_workers=2", "train.sample_every=100"))
    config.modalities["image"].data = str(image_shards)
    trainer = Trainer(config, progress=False)
    assert isinstance(trainer.datasets["image"], ShardStream)
    trainer.fit()
    assert len(read_metrics(tmp_path / "w")) == 3


def test_cli_packs_an_ljspeech_folder_in_metadata_order_skipping_unreadable_clips(tmp_path, cli_run):
    root = tmp_path / "LJSpeech-1.1"
    (root / "wavs").mkdir(parents=True)
    ids = [f"LJ001-{i:04d}" for i in range(1, 6)]
    (root / "metadata.csv").write_text("".join(f"{i}|text {i}|text {i}\n" for i in ids))
    for k, clip_id in enumerate(ids):
        write_wav(root / "wavs" / f"{clip_id}.wav", 0.3 * np.sin(np.arange(5000) * 0.02 * (k + 1)), 22050)
    (root / "wavs" / f"{ids[2]}.wav").write_bytes(b"RIFF....not a wav")
    result = cli_run("data", "pack", root, tmp_path / "lj", "--modality", "speech", "--shard-size", "2",
                     "--no-progress")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "lj" / "manifest.json").read_text())
    assert manifest["count"] == 4 and manifest["sample_rate"] == 22050
    names = []
    for shard in manifest["shards"]:
        with tarfile.open(tmp_path / "lj" / shard["name"]) as tar:
            names += [json.loads(tar.extractfile(m).read())["name"] for m in tar if m.name.endswith(".json")]
    assert sorted(names) == sorted(f"wavs/{i}.wav" for i in ids if i != ids[2])


def test_evaluation_reads_real_samples_from_shards(image_shards):
    from mmgan.contract.manager import get_modality
    from mmgan.evaluation.scoring import EvalContext
    from mmgan_image.plugin import ImageConfig

    ctx = EvalContext(modality=get_modality("image"), config=ImageConfig(), generator=torch.nn.Identity(),
                      data=str(image_shards), num_samples=30, batch_size=8)
    batches = list(ctx.real_batches())
    assert [len(b) for b in batches] == [8, 8, 8, 6] and batches[0].shape[1:] == (3, 32, 32)
    again = torch.cat(list(ctx.real_batches()))
    assert torch.equal(torch.cat(batches), again)  # seeded


@pytest.mark.parametrize("start", [1, 3, 4])
def test_resume_with_worker_processes_continues_the_same_batches(image_shards, start):
    # DataLoader starts its round-robin at worker 0 again after a resume; the stream has to follow
    shards = open_shards(str(image_shards))

    def batches(skip, n):
        stream = ShardStream(shards, ImageCodec(32), seed=0, shuffle_buffer=4)
        stream.set_start(skip, 3)
        return list(itertools.islice(iter(DataLoader(stream, batch_size=3, num_workers=2)), n))

    unbroken, resumed = batches(0, start + 3), batches(start, 3)
    assert all(torch.equal(a, b) for a, b in zip(unbroken[start:], resumed, strict=True))


def test_shards_nothing_decodes_are_an_error_not_an_endless_loop(image_shards, tmp_path, cli_run):
    stream = ShardStream(open_shards(str(image_shards)), SpeechCodec(2048, 22050), seed=0, shuffle_buffer=4)
    with pytest.raises(DataError, match="not one sample of an epoch could be decoded"):
        take(stream, 1)
    # the same through the CLI with DataLoader workers: still one line (no manifest here to catch it earlier)
    (tmp_path / "foreign").mkdir()
    shutil.copy(image_shards / "img-000000.tar", tmp_path / "foreign" / "x-000000.tar")
    shutil.copy(image_shards / "img-000001.tar", tmp_path / "foreign" / "x-000001.tar")
    result = cli_run("run", "--plugin", "speech", "--data", tmp_path / "foreign" / "x-{000000..000001}.tar",
                     "--out", tmp_path / "r", "--steps", "1", "--batch-size", "2", "--no-progress",
                     "--set", "train.num_workers=2", "--set", "trunk.width=32", "--set", "speech.segment_length=2048")
    assert_one_line_error(result, "not one sample of an epoch could be decoded", "no wav member")
    assert_one_line_error(cli_run("run", "--plugin", "image", "--data", image_shards, *tiny_args(tmp_path / "w"),
                                  "--set", "train.num_workers=101"), "train.num_workers=101 exceeds the 100 samples")
    assert_one_line_error(cli_run("data", "pack", "builtin:shapes", tmp_path / "s", "--modality", "image",
                                  "--seed", "-1"), "--seed must be in")
