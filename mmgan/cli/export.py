"""``mmgan export``: a run's exported generator in a format other programs run (ONNX)."""

from __future__ import annotations

from pathlib import Path

import click

from mmgan.cli.commands import cli


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True,
              help="The file format (ONNX, for ONNX Runtime and the tools that read it).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Output file, e.g. image.onnx.")
@click.option("--modality", help="Which modality, for a multi-task run.")
@click.option("--last", is_flag=True, help="Use the last step's export, not the best one the run kept (select_by).")
def export(run_dir: Path, fmt: str, output: Path, modality: str | None, last: bool) -> None:
    """Write a run's exported EMA generator as ONNX (input -> sample, dynamic batch), checked under ONNX Runtime
    against PyTorch before it is written (docs/deploy.md). Needs the onnx extra: pip install 'mmgan[onnx]'."""
    from mmgan.evaluation.inference import pick_modality
    from mmgan.evaluation.onnx_export import check_installed, export_onnx
    from mmgan.files import check_not_overwriting, check_writable

    check_installed()
    if output.is_dir():
        raise click.ClickException(f"-o {output} is a directory; give a file name such as {output / 'model.onnx'}")
    name = pick_modality(run_dir, modality)
    check_not_overwriting(output, "-o", run_dir)
    check_writable(output)
    done = export_onnx(run_dir, name, output, last=last)
    free = ", ".join(f"{axis}: {label}" for axis, label in done.dynamic_axes.items())
    click.echo(f"wrote {done.path}: {name} {done.input_name} {list(done.input_shape)} -> output "
               f"{list(done.output_shape)} (dynamic axes {free}); ONNX Runtime matches PyTorch within "
               f"{done.max_difference:.1e} of the output's largest value")
