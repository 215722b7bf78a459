"""Image metrics through the hook and ``mmgan eval``: the shipped classifier, known answers on its
features, bad input (too few samples, no export, mismatched sizes, wrong Inception file), periodic
evaluation during training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY, assert_one_line_error, read_metrics

import mmgan
from mmgan.contract.manager import get_plugin_manager
from mmgan.engine import Trainer
from mmgan.errors import MetricError
from mmgan.evaluation.distances import frechet_distance, kernel_inception_distance
from mmgan_image.datasets import ShapesDataset
from mmgan_image.features import WEIGHTS, classifier_info, features_and_classes
from mmgan_image.inception import FIDInceptionV3, inception_features, load_fid_inception
from mmgan_image.metrics import mode_coverage


def shapes(n: int, seed: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    data = ShapesDataset(size, length=n, seed=seed)
    return torch.stack([data[i] for i in range(n)]), torch.tensor([data.label(i) for i in range(n)])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from mmgan import config as cfg
    from mmgan.contract.manager import get_modality

    out = tmp_path_factory.mktemp("evalrun") / "run"
    config = cfg.resolve(get_modality, plugins=("image",), out=out, steps=2, batch_size=8, overrides=TINY)
    Trainer(config, progress=False).fit()
    return out


def test_the_shipped_classifier_is_accurate_on_held_out_shapes():
    assert WEIGHTS.is_file() and classifier_info()["heldout_accuracy_32"] >= 0.95
    for size in (32, 64):
        images, labels = shapes(100, seed=31337, size=size)
        _, predicted = features_and_classes(images)
        assert (predicted == labels).float().mean() >= 0.95


def test_classifier_distances_grow_with_noise_blur_and_shift():
    real, _ = shapes(160, seed=5)
    corruptions = {
        "noise": lambda x, s: (x + s * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1),
        "blur": lambda x, s: F.interpolate(F.avg_pool2d(x, 1 + int(4 * s)), size=32, mode="bilinear") if s else x,
        "shift": lambda x, s: (x + s).clamp(-1, 1),
    }
    real_feats, _ = features_and_classes(real)
    for name, corrupt in corruptions.items():
        fd, kid = [0.0], [kernel_inception_distance(real_feats, real_feats, subsets=5, subset_size=150)[0]]
        for strength in (0.3, 1.0):
            feats, _ = features_and_classes(corrupt(real, strength))
            fd.append(frechet_distance(real_feats, feats))
            kid.append(kernel_inception_distance(real_feats, feats, subsets=5, subset_size=150)[0])
        assert frechet_distance(real_feats, real_feats) == pytest.approx(0, abs=1e-6)
        assert fd == sorted(fd) and kid == sorted(kid), (name, fd, kid)


def test_mode_coverage_counts_the_classes_present():
    _, labels = features_and_classes(shapes(200, seed=7)[0])
    assert mode_coverage(labels) == 1.0
    assert mode_coverage(torch.full((200,), 3)) == pytest.approx(0.1)
    # a class with a handful of stray samples is not covered
    assert mode_coverage(torch.cat([torch.full((195,), 3), torch.arange(5)])) == pytest.approx(0.1)


def test_mmgan_eval_prints_a_table_and_writes_eval_json(cli_run, tiny_run):
    result = cli_run("eval", tiny_run, "-n", 150, "--batch-size", 100)
    assert result.exit_code == 0, result.output
    report = json.loads((tiny_run / "eval.json").read_text())
    expected = {"swd_32", "swd_16", "swd", "fd", "kid", "kid_std", "precision", "recall", "mode_coverage"}
    assert set(report["metrics"]) == {*expected, "memorisation"} and report["num_samples"] == 150
    # the data-copying verdict: an untrained generator copies nothing; no held-out source, and it says so
    verdict = report["metrics"]["memorisation"]
    assert verdict["copying"] is False and verdict["statistic"] > verdict["threshold"] == -3
    assert verdict["held_out"].startswith("none: builtin:shapes split in two")
    assert (tiny_run / "memorisation" / "image.png").is_file()
    assert report["data"] == "builtin:shapes" and report["step"] == 2
    for name in expected:
        assert name in result.output
    # an untrained generator is far from the data
    assert report["metrics"]["fd"] > 1 and report["metrics"]["precision"] < 0.5


def test_eval_with_too_few_samples_names_the_minimum(cli_run, tiny_run):
    assert_one_line_error(cli_run("eval", tiny_run, "-n", 50, "--out", tiny_run / "small.json"),
                          "at least 129 samples", "-n 129")


def test_eval_of_a_run_without_export_names_the_path(cli_run, tmp_path):
    (tmp_path / "run").mkdir()
    assert_one_line_error(cli_run("eval", tmp_path / "run"), str(tmp_path / "run"), "export")


class BigImages:
    """A reader that answers before the image plugin with 64x64 images whatever the config says."""

    @mmgan.hookimpl(tryfirst=True)
    def mmgan_read_data(self, modality, source, config, seed):
        return ShapesDataset(64, length=300, seed=seed) if source == "builtin:big" else None


def test_eval_with_real_images_of_another_size_names_both(cli_run, tiny_run):
    pm = get_plugin_manager()
    pm.register(BigImages(), name="big-images")
    try:
        result = cli_run("eval", tiny_run, "--data", "builtin:big", "-n", 200, "--out", tiny_run / "big.json")
    finally:
        pm.unregister(name="big-images")
    assert_one_line_error(result, "64x64", "32x32")


@pytest.fixture(scope="module")
def random_inception_file(tmp_path_factory) -> Path:
    """Randomly initialised FID Inception weights, saved as old torch wrote pytorch-fid's file: no BatchNorm
    step counters (half precision: the loader copies into float32 parameters; half the bytes to write)."""
    path = tmp_path_factory.mktemp("inception") / "fid.pth"
    torch.save({k: v.half() for k, v in FIDInceptionV3().state_dict().items() if not k.endswith("num_batches_tracked")},
               path)
    return path


def test_fid_inception_loads_pytorch_fid_keys_and_gives_pool3_features(random_inception_file):
    state = FIDInceptionV3().state_dict()
    known = {  # keys and shapes of pytorch-fid's pt_inception-2015-12-05-6726825d.pth
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3), "Conv2d_4a_3x3.bn.running_var": (192,),
        "Mixed_5b.branch5x5_1.conv.weight": (48, 192, 1, 1), "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
        "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
        "Mixed_7c.branch3x3dbl_3b.bn.running_mean": (384,), "fc.weight": (1008, 2048), "fc.bias": (1008,),
    }
    for key, shape in known.items():
        assert tuple(state[key].shape) == shape, key
    loaded = load_fid_inception(random_inception_file)
    feats = inception_features(loaded, torch.rand(2, 3, 32, 32) * 2 - 1)
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()


def test_a_wrong_inception_file_is_one_line_naming_it(tmp_path, cli_run, tiny_run):
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(MetricError, match="wrong.pth.*not pytorch-fid"):
        load_fid_inception(wrong)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(MetricError, match="junk.pth.*cannot be read"):
        load_fid_inception(tmp_path / "junk.pth")
    result = cli_run("eval", tiny_run, "-n", 200, "--inception-weights", tmp_path / "missing.pth",
                     "--out", tmp_path / "e.json")
    assert_one_line_error(result, "missing.pth")


def test_periodic_evaluation_is_logged_in_metrics_jsonl(tiny_config, tmp_path):
    config = tiny_config(tmp_path / "run", steps=2, extra=("train.eval_every=2", "train.eval_samples=130"))
    Trainer(config, progress=False).fit()
    evals = [r for r in read_metrics(tmp_path / "run") if "image/eval/fd" in r]
    assert [r["step"] for r in evals] == [2]  # every 2 steps: not after step 1
    assert {"image/eval/swd", "image/eval/kid", "image/eval/mode_coverage"} <= set(evals[0])


def test_package_data_ships_the_classifier_weights():
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"weights/*.safetensors"' in text


def test_eval_against_a_folder_with_too_few_images_names_it(cli_run, tiny_run, tmp_path):
    from PIL import Image

    folder = tmp_path / "few"
    folder.mkdir()
    for i in range(5):
        Image.new("RGB", (32, 32), (40 * i, 80, 120)).save(folder / f"{i}.png")
    result = cli_run("eval", tiny_run, "--data", folder, "-n", 150, "--out", tmp_path / "e.json")
    assert_one_line_error(result, "at least 129 samples", str(folder), "got 5")


def test_fid_with_fewer_samples_than_inception_features_names_the_minimum(cli_run, tiny_run, random_inception_file):
    result = cli_run("eval", tiny_run, "-n", 150, "--inception-weights", random_inception_file,
                     "--out", tiny_run / "fid.json")
    assert_one_line_error(result, "FID needs at least 2049 samples", "-n 2049")

