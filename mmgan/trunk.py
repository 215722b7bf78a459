"""The latent trunk shared by every modality of a run: tokens (B, width, T) in, same shape out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmgan.config.trunk import TrunkConfig


def block_users(depths: Mapping[str, int], blocks: int) -> list[list[str]]:
    """For each of ``blocks`` trunk blocks, the modalities that go through it (``depths``: each one's
    ``trunk_depth``, -1 = all blocks), in ``depths``' order."""
    return [[name for name, depth in depths.items() if depth < 0 or depth > block] for block in range(blocks)]


class TrunkBlock(nn.Module):
    """Pre-norm residual block: per-token LayerNorm, FiLM by modality, depthwise conv over T, MLP."""

    def __init__(self, width: int, kernel_size: int, expansion: int, bounded: bool = False) -> None:
        super().__init__()
        self.mix = nn.Conv1d(width, width, kernel_size, padding=kernel_size // 2, groups=width)
        self.up = nn.Conv1d(width, width * expansion, 1)
        self.down = nn.Conv1d(width * expansion, width, 1)
        if not bounded:
            # Zero-initialised output: a fresh trunk is the identity, so a modality's stem -> head network
            # starts exactly as its paper's generator and the trunk learns only what helps. (A bounded
            # block starts as the identity through its zero gate, and needs a live branch to learn it.)
            nn.init.zeros_(self.down.weight)
            nn.init.zeros_(self.down.bias)

    def forward(self, x: torch.Tensor, film: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        h = F.layer_norm(x.transpose(1, 2), x.shape[1:2]).transpose(1, 2)
        scale, shift = film[0].view(1, -1, 1), film[1].view(1, -1, 1)
        h = h * (1 + scale) + shift
        h = self.down(F.gelu(self.up(self.mix(h))))
        if gate is None:
            return x + h
        # the branch at the size of its input, token by token: its share is the gate, whatever Adam does
        # to the branch's weights
        ratio = x.square().mean(1, keepdim=True).add(1e-6).sqrt() / h.square().mean(1, keepdim=True).add(1e-6).sqrt()
        return x + gate * ratio * h


class LatentTrunk(nn.Module):
    """One trunk object per run; each modality has its own FiLM embedding and nothing else.

    Knows no modality beyond its name: the stems and heads that surround it come from plugins.
    Sequences of any length T pass through (the depthwise convolution is padded to keep T).
    """

    def __init__(self, config: TrunkConfig, modalities: Sequence[str]) -> None:
        super().__init__()
        config.validate()
        self.config = config
        bounded = config.residual == "bounded"
        self.blocks = nn.ModuleList(
            TrunkBlock(config.width, config.kernel_size, config.expansion, bounded) for _ in range(config.depth)
        )
        # FiLM (scale, shift) per block, zero = no modulation
        self.film = nn.ParameterDict(
            {name: nn.Parameter(torch.zeros(config.depth, 2, config.width)) for name in modalities}
        )
        # bounded residual: each modality's gate per block, zero = the block is the identity
        self.gate = nn.ParameterDict(
            {name: nn.Parameter(torch.zeros(config.depth)) for name in modalities} if bounded else {}
        )

    @property
    def width(self) -> int:
        return self.config.width

    def forward(self, tokens: torch.Tensor, modality: str, depth: int = -1) -> torch.Tensor:
        """``tokens`` through the first ``depth`` blocks (-1: all), with ``modality``'s FiLM."""
        if tokens.dim() != 3 or tokens.shape[1] != self.width:
            raise ValueError(f"trunk expects tokens (B, {self.width}, T), got {tuple(tokens.shape)}")
        film, gate = self.film[modality], self.gate.get(modality, None)
        for i, block in enumerate(self.blocks[:depth] if depth >= 0 else self.blocks):
            tokens = block(tokens, film[i], None if gate is None else gate[i])
        return tokens


class GeneratorSet(nn.Module):
    """Every generator of a run: ``heads[m](trunk(stems[m](x), m))`` with one trunk for all modalities.

    One module, so Accelerate/DDP wraps it once and the trunk's parameters exist once.
    """

    def __init__(self, trunk: LatentTrunk, parts: dict[str, tuple[nn.Module, nn.Module]],
                 depths: Mapping[str, int] | None = None) -> None:
        super().__init__()
        self.trunk = trunk
        # how many trunk blocks each modality goes through (-1 or missing: all)
        self.depths = {name: (depths or {}).get(name, -1) for name in parts}
        self.stems = nn.ModuleDict({name: stem for name, (stem, _) in parts.items()})
        self.heads = nn.ModuleDict({name: head for name, (_, head) in parts.items()})

    def forward(self, modality: str | Mapping[str, torch.Tensor], x: torch.Tensor | None = None) -> Any:
        """``G(modality, x)`` -> one sample batch; ``G({modality: x, ...})`` -> ``{modality: batch}``.

        The dict form runs every modality in one call: under DDP one forward per step touches every
        parameter, so no head is "unused" and the reducer never waits for gradients that cannot come.
        """
        # never self.forward here: Accelerate patches the instance's forward with one autocast object, and
        # entering that object again from inside itself leaves autocast switched on after the call
        if isinstance(modality, Mapping):
            return {name: self._generate(name, inputs) for name, inputs in modality.items()}
        return self._generate(modality, x)

    def _generate(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        head = self.heads[modality]
        tokens = self.trunk(self.stems[modality](x), modality, self.depths[modality])
        # a head that asks for it (takes_input = True) gets the generator's input too, around the trunk
        return head(tokens, x) if getattr(head, "takes_input", False) else head(tokens)

    def at_training_step(self, step: int) -> None:
        """Tell every stem and head that defines ``at_training_step(step)`` which training step (0-based)
        the next forward belongs to (contract version 6: a part that changes with training, as the speech
        head's phase projections switch on at ``speech.phase_iterations_start``). The trainer calls it
        before each step's forward on the generator it trains; the EMA copy, evaluation and inference never
        hear it, so a part must behave there as it will once training is over."""
        for part in (*self.stems.values(), *self.heads.values()):
            hook = getattr(part, "at_training_step", None)
            if callable(hook):
                hook(step)

    def unused_trunk_blocks(self) -> list[int]:
        """Indices of trunk blocks that no modality of this set goes through."""
        blocks = len(self.trunk.blocks)
        deepest = max((blocks if d < 0 else min(d, blocks) for d in self.depths.values()), default=0)
        return list(range(deepest, len(self.trunk.blocks)))

    def modality_state_dict(self, modality: str) -> dict[str, torch.Tensor]:
        """The weights one modality's generator needs: its stem, the trunk (its own FiLM only), its head."""
        own = (f"stems.{modality}.", f"heads.{modality}.")
        state, storages = {}, set()
        for key, value in self.state_dict().items():
            if key.startswith(("stems.", "heads.")) and not key.startswith(own):
                continue
            if key.startswith(("trunk.film.", "trunk.gate.")) and key not in (f"trunk.film.{modality}",
                                                                              f"trunk.gate.{modality}"):
                continue
            # the weights themselves, not a copy (a copy of a large generator is as large again, at the moment the
            # export's writer makes its own): copied only where safetensors needs it, a storage shared by two
            # names (it refuses those) or a tensor that is not contiguous
            value = value.detach()
            shared = value.untyped_storage().data_ptr() in storages
            storages.add(value.untyped_storage().data_ptr())
            state[key] = value.clone().contiguous() if shared else value.contiguous()
        return state


class DiscriminatorSet(nn.Module):
    """All discriminators of a run in one module (one optimizer, one DDP wrapper)."""

    def __init__(self, discriminators: dict[str, nn.Module]) -> None:
        super().__init__()
        self.discriminators = nn.ModuleDict(discriminators)

    def forward(self, modality: str | Mapping[str, Sequence[torch.Tensor]], x: torch.Tensor | None = None) -> Any:
        """``D(modality, x)`` -> that D's output; ``D({modality: [x1, x2], ...})`` -> ``{modality: [out1, out2]}``
        (each batch through its D separately, so BatchNorm sees real and fake apart, as in DCGAN)."""
        if isinstance(modality, Mapping):
            return {name: [self.discriminators[name](t) for t in batches] for name, batches in modality.items()}
        return self.discriminators[modality](x)
