"""``mmgan explore``: interpolation paths through a run's exported generator (docs/trust.md)."""

from __future__ import annotations

from pathlib import Path

import click

from mmgan.cli.commands import cli


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output directory [default: RUN/explore/MODALITY].")
@click.option("--modality", help="Which modality, for a multi-task run.")
@click.option("--last", is_flag=True, help="Use the last step's export, not the best one the run kept (select_by).")
@click.option("--rows", type=int, default=6, show_default=True, help="Paths: pairs of end points.")
@click.option("--steps", type=int, default=8, show_default=True, help="Samples along each path, end points included.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the end points.")
def explore(run_dir: Path, output: Path | None, modality: str | None, last: bool, rows: int, steps: int,
            seed: int) -> None:
    """Spherical interpolation between noise draws (image), or a morph between two mels' trunk states (speech),
    rendered by the modality; the report shows RUN/explore."""
    from mmgan.evaluation.explore import explore as run_explore
    from mmgan.evaluation.inference import pick_modality
    from mmgan.files import check_writable

    name = pick_modality(run_dir, modality)
    out = output or Path(run_dir) / "explore" / name
    if out.exists() and not out.is_dir():
        raise click.ClickException(f"-o {out} is a file; give a directory")
    check_writable(out / "explore.json", "the exploration")
    facts = run_explore(run_dir, name, out, last=last, rows=rows, steps=steps, seed=seed)
    click.echo(f"wrote {', '.join(facts['files'])} to {out}: {name}, {facts['kind']}, {rows} paths of {steps}")
