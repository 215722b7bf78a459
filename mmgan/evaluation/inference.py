"""Loading an exported generator (safetensors + JSON) and sampling from it, with no unpickling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pluggy
import torch

from mmgan.checkpoint import export_dir_of, exported_modalities, read_export
from mmgan.config import legacy_modality_values, legacy_trunk_values, section_from_dict
from mmgan.config.sizes import Part, build_on_meta, check_memory, footprint, host_memory, human_bytes, size_settings
from mmgan.contract import calls
from mmgan.contract.manager import get_modality, get_plugin_manager
from mmgan.contract.modality import ModalityConfig
from mmgan.errors import CheckpointError, ConfigError
from mmgan.trunk import GeneratorSet, LatentTrunk, TrunkConfig


def pick_modality(run_dir: Path, modality: str | None) -> str:
    """The exported modality to use: the one asked for, or the only one the run has."""
    found = exported_modalities(run_dir)
    if not found:
        raise CheckpointError(f"run {run_dir} has no exported generator (expected {run_dir}/export/*.safetensors)")
    if modality is None:
        if len(found) > 1:
            raise CheckpointError(f"run {run_dir} has several modalities ({', '.join(found)}); pass --modality")
        return found[0]
    if modality not in found:
        raise CheckpointError(f"run {run_dir} has no exported {modality!r} generator; it has {', '.join(found)}")
    return modality


def load_generator(run_dir: str | Path, modality: str, pm: pluggy.PluginManager | None = None,
                   last: bool = False) -> tuple[GeneratorSet, Any]:
    """The exported EMA generator of ``modality`` in eval mode, and the modality's config: the best
    export when the run kept one (``<modality>.select_by``), else, or with ``last``, the last step's."""
    pm = pm or get_plugin_manager()
    run_dir = Path(run_dir)
    state, meta = read_export(run_dir, modality, last)
    origin = f"{export_dir_of(run_dir, modality, last)}/{modality}.json"
    values = meta.get("config", {})
    if isinstance(values, dict):
        values = {**values, **legacy_modality_values(values, get_modality(modality, pm))}
    config = section_from_dict(get_modality(modality, pm).config_class, values, origin)
    trunk_values = meta.get("trunk", {})
    if isinstance(trunk_values, dict):
        trunk_values = {**trunk_values, **legacy_trunk_values(trunk_values)}
    trunk_config = section_from_dict(TrunkConfig, trunk_values, origin)

    def build() -> GeneratorSet:
        trunk = LatentTrunk(trunk_config, [modality])
        built = calls.build_generator(modality, config, trunk.width, pm)
        if built is None:
            raise CheckpointError(f"no installed plugin builds a {modality!r} generator for {origin}")
        return GeneratorSet(trunk, {modality: built}, {modality: config.trunk_depth})

    # the JSON's sizes, in range, may still not be the weights' or fit in memory: both are found on the
    # meta device, before the real network is allocated
    shapes = build_on_meta(build)
    if shapes is not None:
        _check_weights_fit(shapes, state, origin, modality)
        parts = [Part("trunk", size_settings("trunk", trunk_config), footprint(shapes, ["trunk."]).inference),
                 Part(modality, size_settings(modality, config, ModalityConfig),
                      footprint(shapes, ["stems.", "heads."]).inference)]
        check_memory(parts, torch.device("cpu"), f"the generator of {origin}", CheckpointError)
    generator = build()
    try:
        generator.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"exported weights in {origin} do not fit the {modality!r} generator: "
                              f"{str(exc).splitlines()[0]}") from None
    return generator.eval().requires_grad_(False), config


def _check_weights_fit(network: torch.nn.Module, state: dict[str, torch.Tensor], origin: str, modality: str) -> None:
    """A CheckpointError where an exported tensor's shape is not the one ``network`` (built on the meta
    device from the export's JSON) has, naming the first. Missing and unexpected keys are left to
    ``load_state_dict``, whose hooks may rename them (weight norm's older keys)."""
    expected = {key: tuple(value.shape) for key, value in network.state_dict().items()}
    wrong = [f"{key} is {tuple(value.shape)}, the config makes it {expected[key]}"
             for key, value in sorted(state.items()) if key in expected and tuple(value.shape) != expected[key]]
    if wrong:
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise CheckpointError(f"exported weights in {origin} do not fit the {modality!r} generator: {wrong[0]}{more}")


@torch.no_grad()
def sample(generator: GeneratorSet, modality: str, config: Any, n: int, seed: int,
           pm: pluggy.PluginManager | None = None, batch_size: int = 256) -> torch.Tensor:
    """``n`` samples of an unconditional modality from seeded noise, in batches."""
    spec = get_modality(modality, pm or get_plugin_manager())
    if spec.sample_input is None:
        raise CheckpointError(f"modality {modality!r} is conditional: it needs an input, not just noise")
    # every sample (and its input) is held until they are written: n of them must fit in memory, with a
    # copy for the writer; measured on one probe sample before anything big is drawn
    probe_input = spec.sample_input(1, config, torch.Generator().manual_seed(seed))
    probe = generator(modality, probe_input)
    needed = n * (2 * probe.numel() * probe.element_size() + probe_input.numel() * probe_input.element_size())
    free = host_memory()
    if free is not None and needed > free[0]:
        raise ConfigError(f"-n {n}: {n} {modality} samples take about {human_bytes(needed)}, more than the "
                          f"{human_bytes(free[0])} available ({free[1]}); ask for fewer")
    gen = torch.Generator().manual_seed(seed)
    inputs = spec.sample_input(n, config, gen)
    return torch.cat([generator(modality, chunk) for chunk in inputs.split(batch_size)])
