"""The feature network behind the image metrics: a small CNN classifier of the 10 built-in shape classes.

No Inception weights can be downloaded here, so FD, KID, precision/recall and mode coverage use the
128-d penultimate features (and the class decision) of this network, trained on ``builtin:shapes`` by
``python -m mmgan_image.train_features`` and shipped as ``weights/shapes_classifier.safetensors``.
It sees 32x32 images: 64x64 ones are average-pooled to 32x32 first (``to_classifier_input``).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from mmgan.errors import MetricError

INPUT_SIZE = 32
FEATURE_DIM = 128
WEIGHTS = Path(__file__).resolve().parent / "weights" / "shapes_classifier.safetensors"


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ShapesClassifier(nn.Module):
    """32x32 RGB in [-1, 1] -> four conv blocks (32, 64, 128, 128 channels, pooling to 4x4) -> global
    average -> 128 features -> 10 logits."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _block(3, 32), nn.MaxPool2d(2),
            _block(32, 64), nn.MaxPool2d(2),
            _block(64, 128), nn.MaxPool2d(2),
            _block(128, FEATURE_DIM),
        )
        self.classify = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(B, 128)`` of ``(B, 3, 32, 32)`` images."""
        return self.body(images).mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(images))


def to_classifier_input(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, S, S)`` images with S a multiple of 32, average-pooled to the classifier's 32x32."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise MetricError(f"the shapes classifier takes RGB images (B, 3, H, W), got {tuple(images.shape)}")
    side = images.shape[-1]
    if images.shape[-2] != side or side % INPUT_SIZE:
        raise MetricError(f"the shapes classifier takes square images of 32 or 64 pixels, got "
                          f"{images.shape[-2]}x{side}")
    return F.avg_pool2d(images, side // INPUT_SIZE) if side != INPUT_SIZE else images


@cache
def load_classifier(path: Path = WEIGHTS) -> ShapesClassifier:
    """The shipped classifier in eval mode (cached per process)."""
    if not path.is_file():
        raise MetricError(f"the shapes classifier weights are missing: {path} (python -m mmgan_image.train_features)")
    model = ShapesClassifier()
    model.load_state_dict(load_file(str(path)))
    return model.eval().requires_grad_(False)


def classifier_info(path: Path = WEIGHTS) -> dict:
    """What train_features recorded beside the weights: held-out accuracy, seeds, steps."""
    meta = path.with_suffix(".json")
    return json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}


@torch.no_grad()
def features_and_classes(images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features ``(N, 128)`` and predicted classes ``(N,)`` of images in [-1, 1]."""
    model = load_classifier()
    feats, classes = [], []
    for batch in images.split(batch_size):
        f = model.features(to_classifier_input(batch.float()))
        feats.append(f)
        classes.append(model.classify(f).argmax(dim=1))
    return torch.cat(feats), torch.cat(classes)
