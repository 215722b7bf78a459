"""``mmgan data pack``: any source of a modality as WebDataset shards."""

from __future__ import annotations

from pathlib import Path

import click

from mmgan.cli.commands import cli
from mmgan.contract import calls
from mmgan.contract.manager import get_modality


@cli.group()
def data() -> None:
    """Prepare data: pack any source into WebDataset shards."""


@data.command("pack")
@click.argument("source")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--modality", required=True, help="Which modality's format to write (see `mmgan plugins`).")
@click.option("--shard-size", type=int, default=1000, show_default=True, help="Samples per shard.")
@click.option("--limit", type=int, help="Pack at most this many samples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the packing order (and built-in data).")
@click.option("--set", "overrides", multiple=True, metavar="MODALITY.KEY=VALUE",
              help="A modality setting, e.g. image.image_size=64.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def pack(source: str, out: Path, modality: str, shard_size: int, limit: int | None, seed: int,
         overrides: tuple[str, ...], no_progress: bool) -> None:
    """Write SOURCE (builtin:NAME, a folder, LJSpeech) as tar shards plus manifest.json in the new folder OUT."""
    from mmgan import config as cfg
    from mmgan.data.shards import check_pack_output
    from mmgan.data.shards import pack as pack_shards

    for text in overrides:
        if not text.startswith(f"{modality}."):
            raise click.ClickException(f"--set {text!r}: data pack takes {modality}.KEY=VALUE settings only")
    check_pack_output(out)  # in pack's words, before the config's check of OUT as a run directory
    config = cfg.resolve(get_modality, plugins=(modality,), overrides=overrides, out=out)
    codec = calls.shard_codec(modality, config.modalities[modality])
    if codec is None:
        raise click.ClickException(f"no installed plugin writes {modality!r} shards (its shard_codec)")
    manifest = pack_shards(codec, modality, source, out, shard_size=shard_size, seed=seed, limit=limit,
                           progress=not no_progress)
    click.echo(f"wrote {manifest['count']} {modality} samples in {len(manifest['shards'])} shards to {out} "
               f"(--data {out})")
