"""How core asks a modality for something: its object's method, with the per-modality hooks of contract 6
asked first (for a first answer) or beside it (where every answer counts), so old plugins keep working."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from mmgan.contract.manager import get_modality_object, get_plugin_manager, modality_objects
from mmgan.errors import MMGANError, PluginFailed, first_line

if TYPE_CHECKING:
    import torch
    from torch import nn

    from mmgan.contract.codec import ShardCodec
    from mmgan.contract.contexts import EvalContext, ReportContext, ReportSection


@contextlib.contextmanager
def plugin_code(name: str, method: str, pm: pluggy.PluginManager) -> Iterator[None]:
    """Around a call into a modality's own code: an exception that is not one of mmgan's (a user mistake it
    reports) or the operating system's becomes :class:`PluginFailed`, naming the modality, its plugin and
    ``method``."""
    try:
        yield
    except (MMGANError, OSError):
        raise
    except Exception as exc:
        try:
            plugin = type(get_modality_object(name, pm)).__module__.split(".")[0]
        except Exception:  # noqa: BLE001 - the plugin's own error matters more
            plugin = "?"
        raise PluginFailed(f"modality {name!r} (plugin {plugin}): {method} raised {type(exc).__name__}: "
                           f"{first_line(exc)}") from exc


def build_generator(name: str, config: Any, width: int,
                    pm: pluggy.PluginManager | None = None) -> tuple[nn.Module, nn.Module] | None:
    """``(stem, head)`` of modality ``name``."""
    pm = pm or get_plugin_manager()
    with plugin_code(name, "build_generator", pm):
        built = pm.hook.mmgan_build_generator(modality=name, config=config, width=width)
        return built if built is not None else get_modality_object(name, pm).build_generator(config, width)


def build_discriminator(name: str, config: Any, pm: pluggy.PluginManager | None = None) -> nn.Module | None:
    """Modality ``name``'s discriminator, through the wrappers of ``mmgan_build_discriminator``."""
    pm = pm or get_plugin_manager()
    with plugin_code(name, "build_discriminator", pm):
        return pm.hook.mmgan_build_discriminator(modality=name, config=config)


def read_data(name: str, source: str, config: Any, seed: int,
              pm: pluggy.PluginManager | None = None) -> torch.utils.data.Dataset | None:
    """The dataset of ``source`` for modality ``name``, or None if nobody reads that source."""
    pm = pm or get_plugin_manager()
    dataset = pm.hook.mmgan_read_data(modality=name, source=source, config=config, seed=seed)
    return dataset if dataset is not None else get_modality_object(name, pm).read_data(source, config, seed)


def shard_codec(name: str, config: Any, pm: pluggy.PluginManager | None = None) -> ShardCodec | None:
    """Modality ``name``'s shard codec, or None."""
    pm = pm or get_plugin_manager()
    codec = pm.hook.mmgan_shard_codec(modality=name, config=config)
    return codec if codec is not None else get_modality_object(name, pm).shard_codec(config)


def write_samples(name: str, samples: torch.Tensor, path: Path, config: Any, real: torch.Tensor | None,
                  pm: pluggy.PluginManager | None = None) -> list[Path] | None:
    """The files modality ``name`` wrote for ``samples`` at ``path``, or None if nobody writes them."""
    pm = pm or get_plugin_manager()
    written = pm.hook.mmgan_write_samples(modality=name, samples=samples, path=path, config=config, real=real)
    if written is not None:
        return written
    return get_modality_object(name, pm).write_samples(samples, path, config, real)


def evaluations(ctx: EvalContext, pm: pluggy.PluginManager | None = None) -> list[dict[str, Any] | None]:
    """Every answer for ``ctx.modality``'s metrics: its object's, then each plugin's ``mmgan_evaluate``."""
    pm = pm or get_plugin_manager()
    return [get_modality_object(ctx.name, pm).evaluate(ctx), *pm.hook.mmgan_evaluate(ctx=ctx)]


def report_sections(ctx: ReportContext, pm: pluggy.PluginManager | None = None) -> list[ReportSection]:
    """The report sections of ``ctx.modality``: its object's (none when the modality is not installed here),
    then each contract-6 plugin's."""
    pm = pm or get_plugin_manager()
    own = modality_objects(pm).get(ctx.modality)
    answers = [own.report_section(ctx) if own is not None else None, *pm.hook.mmgan_report_section(ctx=ctx)]
    return [section for section in answers if section is not None]


#: the most values core's default features keep of one sample
DEFAULT_FEATURES = 4096


def features(name: str, samples: torch.Tensor, config: Any, pm: pluggy.PluginManager | None = None) -> torch.Tensor:
    """Modality ``name``'s features (N, d) of ``samples`` (N, ...): its ``features``, else the samples
    flattened, average-pooled along their last axis to at most :data:`DEFAULT_FEATURES` values."""
    import torch.nn.functional as F

    pm = pm or get_plugin_manager()
    samples = samples.detach().float().cpu()
    with plugin_code(name, "features", pm):
        found = get_modality_object(name, pm).features(samples, config)
    if found is None:
        flat = samples.reshape(samples.shape[0], -1)
        if flat.shape[1] > DEFAULT_FEATURES:
            flat = F.adaptive_avg_pool1d(flat[:, None], DEFAULT_FEATURES)[:, 0]
        return flat
    if found.dim() != 2 or found.shape[0] != samples.shape[0]:
        raise PluginFailed(f"modality {name!r}: features must return (N, d) for N = {samples.shape[0]} samples, "
                           f"got {tuple(found.shape)}")
    return found.detach().float().cpu()
