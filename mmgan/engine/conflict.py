"""How the modalities' gradients meet on the trunk blocks they share (``trunk.gradients``).

In a run of several modalities, a trunk block that more than one goes through gets a gradient from each.
``"sum"`` adds them, as one backward of the summed loss does. Two remedies from the multi-task literature
for when one modality's gradient undoes another's (negative transfer):

- ``"pcgrad"``: gradient surgery (Yu et al. 2020). Each modality's gradient loses its component along
  every other modality's gradient that it points against (a negative dot product); the projected
  gradients are summed. Where no two conflict it is the sum.
- ``"normalized"``: each modality's gradient is rescaled to the mean of their norms before the sum, so a
  modality whose loss is large in its units (speech's mel L1 x 45) cannot drown another's (a
  loss-balancing remedy in the spirit of GradNorm, Chen et al. 2018, without its learnt weights).

Only the shared blocks are touched: every other parameter belongs to one modality and gets its own
gradient unchanged. Under several processes the per-modality gradients are averaged over the processes
before they are combined, so the result is what one process with the whole batch would compute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from mmgan.errors import ConfigError
from mmgan.trunk import block_users

if TYPE_CHECKING:
    from mmgan.engine.parts import StepParts

METHODS = ("sum", "pcgrad", "normalized")
_EPS = 1e-20


def shared_blocks(depths: Mapping[str, int], blocks: int) -> list[int]:
    """Indices of the trunk blocks at least two modalities go through (``depths``: -1 = all ``blocks``)."""
    return [block for block, users in enumerate(block_users(depths, blocks)) if len(users) >= 2]


def shared_parameters(trunk: nn.Module, depths: Mapping[str, int]) -> list[nn.Parameter]:
    """The parameters of the shared trunk blocks (``trunk.blocks``), in a fixed order."""
    return [p for block in shared_blocks(depths, len(trunk.blocks)) for p in trunk.blocks[block].parameters()]


def project_conflicts(grads: Sequence[torch.Tensor], order: Sequence[Sequence[int]] | None = None
                      ) -> list[torch.Tensor]:
    """PCGrad's projection: for each flat gradient ``grads[i]``, remove its component along each
    ``grads[j]`` (``j`` in ``order[i]``, default all others in index order) that it has a negative dot
    product with, using the partly projected ``grads[i]`` at each turn."""
    projected = []
    for i, grad in enumerate(grads):
        out = grad.clone()
        for j in (order[i] if order is not None else range(len(grads))):
            if j == i:
                continue
            other = grads[j]
            dot = torch.dot(out, other)
            if dot < 0:
                out = out - dot / torch.dot(other, other).clamp_min(_EPS) * other
        projected.append(out)
    return projected


def balance_norms(grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each flat gradient rescaled to the mean norm of the nonzero ones; a zero gradient (a modality that
    gives the shared blocks nothing, e.g. through a gate still at 0) stays zero and shrinks no other."""
    norms = torch.stack([g.norm() for g in grads])
    nonzero = norms > 0
    if not nonzero.any():
        return list(grads)
    mean = norms[nonzero].mean()
    return [g * (mean / n) if n > 0 else g for g, n in zip(grads, norms, strict=True)]


def combine(grads: Sequence[torch.Tensor], method: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """The shared blocks' gradient from the modalities' flat ``grads`` by ``method`` (see the module
    docstring). PCGrad visits the others in an order drawn from ``generator`` (a fixed one without it):
    with two modalities the order does not matter."""
    if method not in METHODS:
        raise ValueError(f"trunk.gradients must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "pcgrad":
        n = len(grads)
        order = [torch.randperm(n, generator=generator).tolist() if generator is not None else list(range(n))
                 for _ in range(n)]
        grads = project_conflicts(grads, order)
    elif method == "normalized":
        grads = balance_norms(grads)
    return torch.stack(list(grads)).sum(dim=0)


# ---- in the generator's update ----------------------------------------------------------------------


def shared_trunk_parameters(parts: StepParts, live: list[str]) -> list[torch.Tensor]:
    """The trainable parameters of the trunk blocks that several of the ``live`` modalities go through (none
    when the trunk is frozen: then the modalities' gradients on it are not used)."""
    generators = parts.accelerator.unwrap_model(parts.G)
    depths = {name: generators.depths[name] for name in live}
    return [p for p in shared_parameters(generators.trunk, depths) if p.requires_grad]


def combined_update(parts: StepParts, total: torch.Tensor, per: dict[str, torch.Tensor],
                    shared: list[torch.Tensor], step: int) -> None:
    """The G update with the shared trunk blocks' gradient combined from each modality's (``trunk.gradients``).

    Each modality's gradient on the shared blocks comes from its own loss (``autograd.grad``, which leaves
    ``.grad`` and DDP's reducer alone), averaged over the processes; then one backward of the summed loss
    gives every other parameter its gradient, and the shared blocks' is replaced by the combination.
    """
    acc = parts.accelerator
    if acc.gradient_accumulation_steps > 1:
        raise ConfigError(f"trunk.gradients={parts.trunk_gradients} cannot be combined with gradient accumulation "
                          f"({acc.gradient_accumulation_steps} steps): use trunk.gradients=sum")
    generators = acc.unwrap_model(parts.G)
    # fp16: each modality's gradient from its scaled loss, as the backward's, so that small ones do not
    # underflow and an overflow reaches the scaler (every combination is linear in the gradients' scale)
    scaler = getattr(acc, "scaler", None)
    flat = []
    for name in per:
        if generators.depths[name] == 0:  # a modality that does not go through the trunk gives it nothing
            continue
        loss = scaler.scale(per[name]) if scaler is not None else per[name]
        grads = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
        flat.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                               for g, p in zip(grads, shared, strict=True)]))
    stacked = torch.stack(flat)
    if acc.num_processes > 1:
        stacked = acc.reduce(stacked, reduction="mean")
    order = torch.Generator().manual_seed(parts.seed * 1_000_003 + step)
    combined = combine(list(stacked), parts.trunk_gradients, order)
    parts.opt_g.zero_grad(set_to_none=True)
    acc.backward(total)
    offset = 0
    for p in shared:
        n = p.numel()
        p.grad = combined[offset:offset + n].view_as(p).to(p.dtype)
        offset += n
    parts.opt_g.step()
