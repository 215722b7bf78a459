"""Adversarial losses (non-saturating, hinge, least squares), registered as a plugin of core.

A loss takes discriminator logits. A discriminator may return one tensor, a list of tensors (one per
scale, as MelGAN's) or an object with a ``logits`` attribute; each scale's loss is averaged.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

# torch is imported inside the functions that compute: this module is core's loss plugin, registered
# whenever the plugin manager is built (every CLI start, `mmgan --help` included)
if TYPE_CHECKING:
    import torch

hookimpl = pluggy.HookimplMarker("mmgan")


def logits_of(output: Any) -> list[torch.Tensor]:
    """The logits of a discriminator output, as a list with one tensor per scale."""
    import torch

    output = getattr(output, "logits", output)
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Sequence) and output and all(isinstance(t, torch.Tensor) for t in output):
        return list(output)
    raise TypeError(
        f"discriminator output must be a tensor, a list of tensors or have .logits, not {type(output).__name__}"
    )


def r1_penalty(discriminator: Callable[[torch.Tensor], Any], real: torch.Tensor) -> torch.Tensor:
    """``E ||grad_x D(x)||^2`` over a batch of real samples (Mescheder et al. 2018's R1 without its
    ``gamma / 2``), with the graph kept so that it trains the discriminator; every scale's logits count."""
    import torch

    real = real.detach().requires_grad_(True)
    score = sum(logits.float().sum() for logits in logits_of(discriminator(real)))
    (grad,) = torch.autograd.grad(score, real, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


class AdversarialLoss(abc.ABC):
    """A GAN objective: ``d_loss`` for the discriminator step, ``g_loss`` for the generator step.

    Subclasses define the per-scale terms ``_d`` and ``_g`` on logit tensors.
    """

    def d_loss(self, real: Any, fake: Any) -> torch.Tensor:
        """Discriminator loss from its outputs on a real and a generated batch."""
        pairs = list(zip(logits_of(real), logits_of(fake), strict=True))
        return sum(self._d(r, f) for r, f in pairs) / len(pairs)

    def g_loss(self, fake: Any) -> torch.Tensor:
        """Generator loss from the discriminator's output on a generated batch."""
        scales = logits_of(fake)
        return sum(self._g(f) for f in scales) / len(scales)

    @abc.abstractmethod
    def _d(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Discriminator loss on one scale's logits."""

    @abc.abstractmethod
    def _g(self, fake: torch.Tensor) -> torch.Tensor:
        """Generator loss on one scale's logits."""


class NonSaturatingLoss(AdversarialLoss):
    """Goodfellow et al. 2014: D maximises log D(x) + log(1 - D(G(z))); G maximises log D(G(z))."""

    def _d(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        # softplus(-x) == -log(sigmoid(x)), stable for large |x|
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def _g(self, fake: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.softplus(-fake).mean()


class HingeLoss(AdversarialLoss):
    """Lim & Ye 2017, as in SAGAN and BigGAN."""

    def _d(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()

    def _g(self, fake: torch.Tensor) -> torch.Tensor:
        return -fake.mean()


class LeastSquaresLoss(AdversarialLoss):
    """Mao et al. 2017 with targets 1 (real) and 0 (fake), as MelGAN/HiFi-GAN use."""

    def _d(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return ((real - 1) ** 2).mean() + (fake**2).mean()

    def _g(self, fake: torch.Tensor) -> torch.Tensor:
        return ((fake - 1) ** 2).mean()


class LossContext:
    """What extra loss terms see, once per modality per step.

    In the discriminator step ``fake`` is detached and ``d_fake`` comes from it; in the generator step
    ``fake`` carries gradients to G and the discriminator's parameters are frozen. ``d_real`` is the
    discriminator's output on ``real``, computed on first use in the generator step (with the freshly
    updated D, as feature matching wants). ``discriminator(x)`` runs this modality's D again.

    ``adversarial`` is False before the modality's ``adversarial_start``: D is not active yet, only
    the generator step runs, and a term that needs D should return nothing (touching ``d_fake``,
    ``d_real`` or ``discriminator`` then raises ``DiscriminatorInactive``, and the engine skips that
    plugin's terms for the step). Added in contract version 3.
    """

    def __init__(self, modality: str, config: Any, step: int, real: torch.Tensor, fake: torch.Tensor,
                 generator_input: torch.Tensor, d_fake: Any, discriminator: Callable[[torch.Tensor], Any],
                 d_real: Any = None, seed: int = 0, rank: int = 0, kind: str = "",
                 plugin_configs: Mapping[str, Any] | None = None, adversarial: bool = True) -> None:
        self.seed, self.rank, self.kind, self.adversarial = seed, rank, kind, adversarial
        self._plugin_configs = plugin_configs or {}
        self.modality = modality
        self.config = config
        self.step = step
        self.real = real
        self.fake = fake
        self.generator_input = generator_input
        self._d_fake = d_fake
        self._discriminator = discriminator
        self._d_real = d_real

    def settings(self, section: str) -> Any:
        """This run's ``[section]``: the config dataclass a plugin registered with ``mmgan_register_config``."""
        if section not in self._plugin_configs:
            from mmgan.errors import PluginError

            known = ", ".join(sorted(self._plugin_configs)) or "none"
            raise PluginError(f"no config section [{section}] in this run (plugin sections: {known}); register "
                              "it with mmgan_register_config")
        return self._plugin_configs[section]

    def rng(self, name: str, device: torch.device | str | None = None) -> torch.Generator:
        """A random generator for the plugin ``name`` (your plugin's name, or any fixed string), seeded
        from the run seed, the step, the process rank, the modality, the step half and ``name``.

        Draw a loss term's random numbers from it: a resumed run then draws exactly what an unbroken one
        drew (nothing to save), and another plugin installed beside yours does not change your draws.
        ``device`` is where the generator lives (``torch.randn(..., generator=g, device=...)`` wants it
        on the tensor's device); the default is the real batch's device.
        """
        import torch

        key = f"{self.seed}/{self.step}/{self.rank}/{self.modality}/{self.kind}/{name}".encode()
        seed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & (2**63 - 1)
        device = torch.device(device) if device is not None else self.real.device
        return torch.Generator(device=device).manual_seed(seed)

    def _active(self, what: str) -> None:
        if not self.adversarial:
            raise DiscriminatorInactive(f"{self.modality}: {what} before {self.modality}.adversarial_start")

    @property
    def d_fake(self) -> Any:
        self._active("d_fake")
        return self._d_fake

    @property
    def discriminator(self) -> Callable[[torch.Tensor], Any]:
        self._active("discriminator")
        return self._discriminator

    @property
    def d_real(self) -> Any:
        self._active("d_real")
        if self._d_real is None:
            self._d_real = self._discriminator(self.real)
        return self._d_real


class DiscriminatorInactive(Exception):  # noqa: N818 - a signal to the engine, not an error to report
    """Raised by a ``LossContext`` when a loss term asks for D before the modality's adversarial start."""


@hookimpl
def mmgan_register_losses(register: Callable[[str, AdversarialLoss], None]) -> None:
    register("nonsaturating", NonSaturatingLoss())
    register("hinge", HingeLoss())
    register("lsgan", LeastSquaresLoss())
