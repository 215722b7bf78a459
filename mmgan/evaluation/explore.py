"""``mmgan explore``: what a run's generator has learnt, seen along paths through its inputs.

- A modality whose input is noise (``sample_input``): spherical interpolation (slerp) between pairs of noise
  draws, ``rows`` pairs of ``steps`` samples each. Gaussian noise lives near a sphere; a straight line
  between two draws passes through its inside, where the generator never saw an input, so the path is a
  great circle, with the norm interpolated too.
- A modality whose input comes from real data (a vocoder's mel): a morph between two inputs' trunk states.
  The generator is ``head(trunk(stem(x)))``: the two inputs' tokens after the trunk are mixed linearly,
  ``(1 - a) t0 + a t1``, and the head renders each mix (a head that takes the input too gets the two inputs
  mixed the same way). The inputs are cut to the shorter one's length.

Each path is rendered by the modality (``ModalityPlugin.write_interpolation``, else ``write_samples`` once per
path) into ``DIR``; ``explore.json`` there says what was done.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mmgan.contract import calls
from mmgan.contract.manager import get_modality, get_modality_object, get_plugin_manager
from mmgan.errors import MMGANError
from mmgan.evaluation.inference import load_generator
from mmgan.files import atomic_path


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Points (len(t), *a.shape) along the great circle from ``a`` to ``b`` (their directions), with the norm
    interpolated linearly; where the directions are (anti)parallel, linear interpolation."""
    shape = a.shape
    a, b = a.reshape(-1).double(), b.reshape(-1).double()
    na, nb = a.norm(), b.norm()
    ua, ub = a / na.clamp_min(1e-12), b / nb.clamp_min(1e-12)
    omega = torch.arccos(torch.clamp(ua @ ub, -1.0, 1.0))
    t = t.double()[:, None]
    if float(torch.sin(omega)) < 1e-6:
        points = (1 - t) * a + t * b
    else:
        direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / torch.sin(omega)
        points = direction * ((1 - t) * na + t * nb)
    return points.float().reshape(len(t), *shape)


def explore(run_dir: Path, modality: str, out: Path, last: bool = False, rows: int = 6, steps: int = 8,
            seed: int = 0, pm: Any = None) -> dict[str, Any]:
    """Write ``modality``'s interpolation paths of the run's export to ``out``; returns what was written."""
    if rows < 1 or steps < 2:
        raise MMGANError(f"--rows must be >= 1 and --steps >= 2, got {rows} and {steps}")
    pm = pm or get_plugin_manager()
    generators, config = load_generator(run_dir, modality, pm, last=last)
    spec = get_modality(modality, pm)
    gen = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, steps)
    with torch.no_grad():
        if spec.sample_input is not None:
            ends = spec.sample_input(2 * rows, config, gen)
            inputs = torch.cat([slerp(ends[2 * r], ends[2 * r + 1], t) for r in range(rows)])
            samples = generators(modality, inputs).float().cpu()
            kind = "slerp between noise draws"
        else:
            samples = _morph(generators, modality, spec, config, rows, t, gen, pm)
            kind = "linear morph between two real inputs' trunk states"
    paths = samples.reshape(rows, steps, *samples.shape[1:])
    out.mkdir(parents=True, exist_ok=True)
    written = _write(modality, paths, out / "interpolation", config, pm)
    facts = {"modality": modality, "run": str(run_dir), "export": "last" if last else "best", "kind": kind,
             "rows": rows, "steps": steps, "seed": seed, "files": [p.name for p in written]}
    with atomic_path(out / "explore.json") as tmp:
        tmp.write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    return facts


def _morph(generators: Any, modality: str, spec: Any, config: Any, rows: int, t: torch.Tensor,
           gen: torch.Generator, pm: Any) -> torch.Tensor:
    dataset = calls.read_data(modality, config.data, config, 0, pm)
    if dataset is None or len(dataset) < 2:
        raise MMGANError(f"modality {modality!r} makes its input from real data, and {config.data!r} gave fewer "
                         "than 2 samples to morph between")
    picks = torch.randperm(len(dataset), generator=gen)[: 2 * rows].tolist()
    if len(picks) < 2 * rows:
        picks = [picks[i % len(picks)] for i in range(2 * rows)]
    real = torch.stack([dataset[i] for i in picks])
    inputs = spec.make_input(real, config, gen)
    return torch.cat([morph(generators, modality, inputs[2 * r], inputs[2 * r + 1], t) for r in range(rows)])


def morph(generators: Any, modality: str, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Samples (len(t), ...) of the head on ``(1 - a) trunk(stem(x0)) + a trunk(stem(x1))`` for each ``a`` in
    ``t`` (inputs of one sample each, cut to the shorter one's length); at ``a = 0`` the generator's own
    sample of ``x0``."""
    n = min(x0.shape[-1], x1.shape[-1])
    inputs = torch.stack([x0[..., :n], x1[..., :n]])
    stem, head = generators.stems[modality], generators.heads[modality]
    t0, t1 = generators.trunk(stem(inputs), modality, generators.depths[modality])
    mixed = torch.stack([(1 - a) * t0 + a * t1 for a in t.tolist()])
    if getattr(head, "takes_input", False):
        mixed_input = torch.stack([(1 - a) * inputs[0] + a * inputs[1] for a in t.tolist()])
        return head(mixed, mixed_input).float().cpu()
    return head(mixed).float().cpu()


def _write(modality: str, paths: torch.Tensor, target: Path, config: Any, pm: Any) -> list[Path]:
    """The modality's own rendering of the paths (one file), else ``write_samples`` once per path."""
    written = get_modality_object(modality, pm).write_interpolation(paths, target, config)
    if written is not None:
        return [Path(p) for p in written]
    files = []
    for r, row in enumerate(paths):
        files += [Path(p) for p in calls.write_samples(modality, row, target.with_name(f"{target.name}_{r}"),
                                                       config, None, pm) or []]
    return files
