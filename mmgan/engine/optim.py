"""The run's two Adam optimizers, with parameter groups where learning rates differ.

Without learning-rate schedules or per-modality optimisation the groups are what they always were (one
for D; one for G, or two with ``trunk.lr_scale`` != 1), so the optimizer state of older checkpoints loads
unchanged. With a schedule (``<modality>.lr_schedule`` or ``lr_warmup``), or a modality with its own
steps, learning rates or betas (``<modality>.steps``, ``lr_g``, ``lr_d``, ``beta1``, ``beta2``: a run of
several modalities has them), every modality's stem and head, its trunk FiLM and gates, and its
discriminator get groups of their own, with its learning rates and betas, tagged for
``mmgan.config.schedule.apply``; the shared trunk keeps ``train.lr_g * trunk.lr_scale`` and ``[train]``'s
betas. In a run of several modalities, a trunk block that one modality alone goes through
(``trunk.exclusive_blocks = "owner"``) is in that modality's group instead, at its ``lr_g x
trunk.lr_scale`` and betas, on its schedule: a modality's private blocks train as in a run of it alone.
Changing that on resume changes the groups, and the checkpoint's optimizer state no longer fits (a
one-line error).
"""

from __future__ import annotations

import torch

from mmgan.config import RunConfig, has_own_optimisation, own_value
from mmgan.config.schedule import GROUP_KEY, scheduled
from mmgan.trunk import DiscriminatorSet, GeneratorSet, block_users


def _adam(groups: list[dict], config: RunConfig, lr: float) -> torch.optim.Optimizer:
    t = config.train
    for group in groups:
        group.setdefault("lr", lr)
        group["base_lr"] = group["lr"]
    return torch.optim.Adam(groups, lr=lr, betas=(t.beta1, t.beta2))


def per_modality_groups(config: RunConfig) -> bool:
    """Whether each modality gets parameter groups of its own (a schedule, or its own optimisation)."""
    return scheduled(config.modalities) or has_own_optimisation(config)


def exclusive_block_owners(config: RunConfig) -> dict[int, str]:
    """Trunk block index -> the one modality that goes through it, for the blocks only one modality of a
    run of several uses (``trunk.exclusive_blocks = "owner"``); empty otherwise (a run of one modality:
    its groups are [train]'s anyway, and its optimizer state keeps the shape it always had)."""
    names = config.run.modalities
    if len(names) < 2 or config.trunk.exclusive_blocks != "owner":
        return {}
    users = block_users({n: config.modalities[n].trunk_depth for n in names}, config.trunk.depth)
    return {block: who[0] for block, who in enumerate(users) if len(who) == 1}


def _betas(config: RunConfig, name: str) -> tuple[float, float]:
    return own_value(config, name, "beta1"), own_value(config, name, "beta2")


def generator_optimizer(generators: GeneratorSet, config: RunConfig) -> torch.optim.Optimizer:
    """Adam over the generators; the trunk in a group of its own when ``trunk.lr_scale`` is not 1, and
    groups per modality (its learning rate and betas) when modalities are scheduled or optimised on
    their own."""
    t, scale = config.train, config.trunk.lr_scale
    trunk = [p for name, p in generators.trunk.named_parameters()
             if not name.startswith(("film.", "gate."))]
    trunk_ids = {id(p) for p in trunk}
    if not per_modality_groups(config):
        if scale == 1:
            # one group, as runs before lr_scale existed: their optimizer state loads unchanged
            return _adam([{"params": list(generators.parameters()), GROUP_KEY: "all"}], config, t.lr_g)
        trunk_all = list(generators.trunk.parameters())
        ids = {id(p) for p in trunk_all}
        rest = [p for p in generators.parameters() if id(p) not in ids]
        return _adam([{"params": rest, GROUP_KEY: "all"},
                      {"params": trunk_all, "lr": t.lr_g * scale, GROUP_KEY: "trunk"}], config, t.lr_g)
    groups = []
    owners = exclusive_block_owners(config)
    owned = {id(p) for block in owners for p in generators.trunk.blocks[block].parameters()}
    for name in config.run.modalities:
        groups.append({"params": [*generators.stems[name].parameters(), *generators.heads[name].parameters()],
                       "lr": own_value(config, name, "lr_g"), "betas": _betas(config, name), GROUP_KEY: name})
        # the modality's FiLM and gates in the trunk are its own group (its schedule): at the modality's own
        # rate and betas when exclusive blocks are owned (they gate its private blocks), else at the trunk's
        film = [generators.trunk.film[name], *([generators.trunk.gate[name]] if name in generators.trunk.gate
                                               else [])]
        film_lr, film_betas = ((own_value(config, name, "lr_g") * scale, _betas(config, name)) if owners
                               else (t.lr_g * scale, (t.beta1, t.beta2)))
        groups.append({"params": film, "lr": film_lr, "betas": film_betas, GROUP_KEY: name})
        private = [p for block, owner in owners.items() if owner == name
                   for p in generators.trunk.blocks[block].parameters()]
        if private:
            groups.append({"params": private, "lr": own_value(config, name, "lr_g") * scale,
                           "betas": _betas(config, name), GROUP_KEY: name})
    shared = [p for p in trunk if id(p) not in owned]
    if shared:
        groups.append({"params": shared, "lr": t.lr_g * scale, GROUP_KEY: "trunk"})
    seen = {id(p) for g in groups for p in g["params"]}
    missing = [p for p in generators.parameters() if id(p) not in seen and id(p) not in trunk_ids]
    if missing:  # nothing should be left: a guard against a module added to GeneratorSet later
        groups.append({"params": missing, GROUP_KEY: "all"})
    return _adam(groups, config, t.lr_g)


def discriminator_optimizer(discriminators: DiscriminatorSet, config: RunConfig) -> torch.optim.Optimizer:
    """Adam over the discriminators: one group, or one per modality (its learning rate and betas) when
    modalities are scheduled or optimised on their own."""
    t = config.train
    if not per_modality_groups(config):
        return _adam([{"params": list(discriminators.parameters()), GROUP_KEY: "all"}], config, t.lr_d)
    return _adam([{"params": list(discriminators.discriminators[name].parameters()),
                   "lr": own_value(config, name, "lr_d"), "betas": _betas(config, name), GROUP_KEY: name}
                  for name in config.run.modalities], config, t.lr_d)
