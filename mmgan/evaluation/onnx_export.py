"""``mmgan export --format onnx``: a run's exported generator as one ONNX file, checked under ONNX Runtime.

The module exported is the modality's generator from its input to a sample (``ModalityPlugin.onnx_module``
may give an equivalent made of ops ONNX has, or refuse with a one-line reason). Its input's batch axis, and
the axes the modality names in ``onnx_axes`` (a vocoder's frames), are dynamic. The file's metadata holds
the modality, mmgan's version, the export's config and trunk (JSON: image size, sample rate and mel
definition, ...) and the axes. Before the file is put in place, ONNX Runtime runs it on the example batch and
on one of another size (and length), and its outputs must match PyTorch's within :data:`TOLERANCE`.

onnx, onnxscript (torch's exporter) and onnxruntime are the ``onnx`` extra, imported only here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmgan import __version__
from mmgan.checkpoint import read_export
from mmgan.contract import calls
from mmgan.contract.manager import get_modality, get_modality_object, get_plugin_manager
from mmgan.errors import ConfigError, MMGANError
from mmgan.evaluation.inference import load_generator
from mmgan.evaluation.scoring import ModalityGenerator
from mmgan.files import atomic_path

log = logging.getLogger("mmgan")

#: the largest |ONNX Runtime - PyTorch| difference accepted by default, relative to the output's largest
#: magnitude (both compute in float32; measured: docs/deploy.md); a modality may declare its own
#: (``ModalityPlugin.onnx_tolerance``)
TOLERANCE = 1e-4
PACKAGES = {"onnx": "onnx", "onnxscript": "onnxscript", "onnxruntime": "onnxruntime"}


class ExportError(MMGANError):
    """A generator that cannot be exported, or whose export does not compute what it computes."""


@dataclass(frozen=True)
class OnnxExport:
    """What ``export_onnx`` wrote: the file, the names and shapes, and the largest difference it measured."""

    path: Path
    modality: str
    input_name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    dynamic_axes: dict[int, str]
    max_difference: float


def check_installed() -> None:
    """A one-line error naming the extra when a package the export needs is missing."""
    missing = [name for name, module in PACKAGES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise ConfigError(f"--format onnx needs {', '.join(missing)}: pip install 'mmgan[onnx]'")


def example_input(modality: str, config: Any, batch: int, seed: int = 0) -> torch.Tensor:
    """A batch of the generator's input: noise where the modality draws it from nothing (``sample_input``),
    else made from real data of its ``data`` source (a vocoder's mels)."""
    spec = get_modality(modality)
    generator = torch.Generator().manual_seed(seed)
    if spec.sample_input is not None:
        return spec.sample_input(batch, config, generator)
    dataset = calls.read_data(modality, config.data, config, seed)
    if dataset is None or len(dataset) < 1:
        raise ExportError(f"modality {modality!r} makes its input from real data, and its source "
                          f"{config.data!r} gave none to export with")
    real = torch.stack([dataset[i % len(dataset)] for i in range(batch)])
    return spec.make_input(real, config, generator)


def export_onnx(run_dir: Path, modality: str, out: Path, last: bool = False, opset: int = 18) -> OnnxExport:
    """Write ``modality``'s exported generator of ``run_dir`` to ``out`` as ONNX, checked under ONNX Runtime."""
    check_installed()
    pm = get_plugin_manager()
    generator, config = load_generator(run_dir, modality, pm, last=last)
    plugin = get_modality_object(modality, pm)
    original = ModalityGenerator(generator, modality).eval()
    module = plugin.onnx_module(generator, config)
    module = (module if module is not None else original).eval()
    axes = {0: "batch", **dict(plugin.onnx_axes)}
    example = example_input(modality, config, batch=2)
    with torch.no_grad():
        reference = original(example)
    try:
        program = _torch_export(module, example, axes)
    except MMGANError:
        raise
    except Exception as exc:  # the exporter's many errors: which op or construct it could not convert
        raise ExportError(f"modality {modality!r} cannot be exported to ONNX: {_reason(exc)}") from exc
    _, meta = read_export(run_dir, modality, last)
    import onnx

    model = program.model_proto
    facts = {"mmgan_version": __version__, "modality": modality, "input": "input", "output": "output",
             "dynamic_axes": json.dumps({str(k): v for k, v in axes.items()}),
             "config": json.dumps(meta.get("config", asdict(config))), "trunk": json.dumps(meta.get("trunk", {})),
             "step": str(meta.get("step", "")), "export": "last" if last else "best"}
    facts.update({key: value if isinstance(value, str) else json.dumps(value)
                  for key, value in plugin.onnx_metadata(config).items()})
    del model.metadata_props[:]
    for key, value in facts.items():
        model.metadata_props.add(key=key, value=value)
    data = model.SerializeToString()
    worst = _check_under_onnxruntime(data, original, modality, config, example, reference, axes,
                                     float(getattr(plugin, "onnx_tolerance", TOLERANCE)))
    with atomic_path(out) as tmp:
        onnx.save_model(onnx.load_from_string(data), str(tmp))
    return OnnxExport(Path(out), modality, "input", tuple(example.shape), tuple(reference.shape), axes, worst)


def _torch_export(module: nn.Module, example: torch.Tensor, axes: dict[int, str]) -> Any:
    dims = {axis: torch.export.Dim(name, min=2 if axis else 1) for axis, name in axes.items()}
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):  # the exporter narrates its steps
        warnings.simplefilter("ignore")
        exporter_logs = logging.getLogger("torch.onnx")
        level = exporter_logs.level
        exporter_logs.setLevel(logging.ERROR)
        try:
            return torch.onnx.export(module, (example,), None, input_names=["input"], output_names=["output"],
                                     dynamic_shapes=({**dims},), dynamo=True, verbose=False)
        finally:
            exporter_logs.setLevel(level)


def _check_under_onnxruntime(data: bytes, module: nn.Module, modality: str, config: Any, example: torch.Tensor,
                             reference: torch.Tensor, axes: dict[int, str], tolerance: float = TOLERANCE) -> float:
    """The largest difference between ONNX Runtime's outputs and PyTorch's (``module``: the generator as it
    trains, not the module the plugin rewrote for ONNX), relative to the output's scale, on the example batch
    and on one of another batch size (and, for a dynamic length, another length)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    other = example_input(modality, config, batch=3, seed=1)
    for axis in (a for a in axes if a > 0):  # a shorter input along each dynamic length axis
        other = other.narrow(axis, 0, max(2, other.shape[axis] // 2))
    worst = 0.0
    for x, expected in ((example, reference), (other, None)):
        if expected is None:
            with torch.no_grad():
                expected = module(x)
        got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
        if got.shape != expected.shape:
            raise ExportError(f"the ONNX export of {modality!r} gives shape {tuple(got.shape)} for input "
                              f"{tuple(x.shape)}, PyTorch {tuple(expected.shape)}")
        scale = expected.abs().max().clamp_min(1e-6)
        worst = max(worst, ((got - expected).abs().max() / scale).item())
    if not worst <= tolerance:
        raise ExportError(f"the ONNX export of {modality!r} differs from PyTorch by {worst:.2e} of the output's "
                          f"largest value under ONNX Runtime (tolerance {tolerance:g}); nothing written")
    return worst


def _reason(exc: BaseException) -> str:
    """What the exporter could not convert: the line of its summary that names an op (its first lines are
    advice), without its colours."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"No ONNX function found for <OpOverload\(op='([^']+)'[^>]*>\.(?: Failure message: ([^\n]+))?",
                      text)
    if found:
        return f"no ONNX function for {found.group(1)}" + (f" ({found.group(2).strip()})" if found.group(2) else "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"


__all__ = ["TOLERANCE", "ExportError", "OnnxExport", "check_installed", "export_onnx"]
