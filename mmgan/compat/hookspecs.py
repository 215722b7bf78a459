"""Kept so that ``from mmgan.hookspecs import hookimpl`` keeps working, and ``pm.add_hookspecs(mmgan.hookspecs)``
still adds every hook: the specs live in :mod:`mmgan.contract.hookspecs` and, for the per-modality hooks of
contract 6, :mod:`mmgan.contract.legacy_hookspecs` (public names: :mod:`mmgan.api`)."""

from __future__ import annotations

from mmgan import hookimpl, hookspec
from mmgan.contract.hookspecs import (  # noqa: F401 (re-exported)
    mmgan_build_discriminator,
    mmgan_evaluate,
    mmgan_loss_terms,
    mmgan_register_callbacks,
    mmgan_register_commands,
    mmgan_register_config,
    mmgan_register_losses,
    mmgan_register_metrics,
    mmgan_register_modalities,
)
from mmgan.contract.legacy_hookspecs import (  # noqa: F401 (re-exported)
    mmgan_build_generator,
    mmgan_command_options,
    mmgan_discriminator_loss_terms,
    mmgan_generator_loss_terms,
    mmgan_read_data,
    mmgan_report_section,
    mmgan_shard_codec,
    mmgan_write_samples,
)

__all__ = ["hookimpl", "hookspec"]
