"""Spectral normalisation (Miyato et al. 2018) on the ``image`` discriminator, without editing its plugin.

A hook wrapper around ``mmgan_build_discriminator``: the image plugin builds its DCGAN discriminator as
usual, ``yield`` hands the built module to this wrapper, and the wrapper returns it with every Conv2d and
Linear weight re-parametrised as W / sigma(W). Other modalities pass through untouched.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import mmgan

if TYPE_CHECKING:  # torch is imported when a discriminator is built, not when mmgan loads this plugin
    from torch import nn

MODALITY = "image"


def add_spectral_norm(module: nn.Module) -> nn.Module:
    """``module`` with spectral norm on the weight of each of its Conv2d and Linear layers, in place."""
    from torch import nn
    from torch.nn.utils.parametrizations import spectral_norm

    for layer in list(module.modules()):  # a list: parametrising adds submodules while we walk
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            spectral_norm(layer)
    return module


@mmgan.hookimpl(wrapper=True)
def mmgan_build_discriminator(modality: str, config: Any) -> Generator[None, nn.Module | None, nn.Module | None]:
    disc = yield  # the first non-None answer of the other plugins (None if no plugin builds one)
    if modality != MODALITY or disc is None:
        return disc
    return add_spectral_norm(disc)
