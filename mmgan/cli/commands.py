"""The ``mmgan`` command: run, plugins, generate, and whatever commands plugins add."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mmgan import __version__
from mmgan.contract import calls
from mmgan.contract.manager import describe_plugins, get_modality, get_plugin_manager
from mmgan.errors import MMGANError, PluginError, PluginFailed, first_line


class MMGANGroup(click.Group):
    """The last line of defence: a user mistake (an MMGANError) or the environment (a full disk, a
    read-only path, Ctrl-C during start-up) is one line and a non-zero exit, never a traceback; any
    other exception is one line too, with a hint to rerun with -v, which prints the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except MMGANError as exc:
            raise click.ClickException(one_line(exc)) from None
        except KeyboardInterrupt:
            click.echo("\ninterrupted", err=True)
            sys.exit(130)
        except PluginFailed as exc:  # a plugin's bug: named, with the way to its traceback
            if VERBOSE.on:
                raise
            raise click.ClickException(f"{exc} (rerun with -v for the traceback)") from None
        except OSError as exc:
            if VERBOSE.on:
                raise
            from mmgan.files import describe_os_error

            where = exc.filename if exc.filename is not None else "a file"
            raise click.ClickException(describe_os_error(where, exc)) from None
        except Exception as exc:
            if VERBOSE.on:
                raise
            raise click.ClickException(f"{type(exc).__name__}: {first_line(exc)} (rerun with -v for the traceback)"
                                       ) from None

    def add_option(self, command: str, option: click.Option) -> None:
        """Give core command ``command`` a plugin's option (from ``mmgan_register_commands``); its value reaches
        evaluation as ``ctx.options[<option's name>]`` (``eval``). An option the command has: a PluginError."""
        if command not in PLUGIN_OPTION_COMMANDS or command not in self.commands:
            raise PluginError(f"a plugin adds option {'/'.join(option.opts)} to mmgan {command}; plugins may add "
                              f"options to: {', '.join(PLUGIN_OPTION_COMMANDS)}")
        _option_adder(self.commands[command])(option)


class VERBOSE:
    """Whether ``-v`` was given (the last line of defence then lets the traceback through)."""

    on = False


def one_line(exc: BaseException) -> str:
    """The message of ``exc``; for an error a DataLoader worker raised (re-raised in the main process as
    "Caught X in DataLoader worker process N. Original Traceback ..."), the original message alone."""
    text = str(exc)
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


@click.group(cls=MMGANGroup)
@click.version_option(__version__, prog_name="mmgan")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def cli(verbose: bool) -> None:
    """mmgan: train GANs for any modality; each modality is a plugin."""
    # mmgan's own messages at INFO; libraries (Accelerate logs every file it saves) only when they warn
    VERBOSE.on = verbose
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("mmgan").setLevel(logging.DEBUG if verbose else logging.INFO)


@cli.command()
@click.option("--plugin", "plugins", multiple=True, metavar="NAME", help="Modality to train; repeat for multi-task.")
@click.option("--data", multiple=True, metavar="SOURCE", help="builtin:NAME or a path; MODALITY=SOURCE with several.")
@click.option("--steps", type=int, help="Training steps (train.steps), for every modality (one: --set M.steps=N).")
@click.option("--batch-size", type=int,
              help="Batch size per process (train.batch_size), for every modality (one: --set M.batch_size=N).")
@click.option("--out", type=click.Path(path_type=Path), help="Run directory [default: runs/<modalities>-<time>].")
@click.option("--seed", type=int, help="Seed of everything random (run.seed).")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="TOML config file.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE", help="Override one config value.")
@click.option("--resume", type=click.Path(path_type=Path), metavar="RUN",
              help="Continue RUN from its last checkpoint; `--resume auto --out RUN`: continue RUN if it holds a "
                   "run, else start it (a requeued cluster job).")
@click.option("--init-trunk", type=click.Path(path_type=Path), metavar="RUN",
              help="Start from RUN's trained trunk (run.init_trunk): its best export, or the last with "
                   "--set run.init_trunk_export=last.")
@click.option("--freeze-trunk", is_flag=True,
              help="Keep the trunk's blocks that --init-trunk gave as they are (run.freeze_trunk); FiLM, gates "
                   "and any deeper blocks train.")
@click.option("--overwrite", is_flag=True,
              help="Start over in a --out that holds a run: remove its checkpoints, samples, export and metrics.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def run(plugins: tuple[str, ...], data: tuple[str, ...], steps: int | None, batch_size: int | None,
        out: Path | None, seed: int | None, config_file: Path | None, overrides: tuple[str, ...],
        resume: Path | None, init_trunk: Path | None, freeze_trunk: bool, overwrite: bool, no_progress: bool
        ) -> None:
    """Train a GAN for one or more modalities (e.g. `mmgan run --plugin image`).

    The first SIGTERM or Ctrl-C stops at the next step boundary with a checkpoint (exit 143 or 130); a
    second Ctrl-C stops at once, keeping the previous checkpoint.
    """
    from mmgan import config as cfg
    from mmgan.engine import Trainer, distributed
    from mmgan.engine.rundir import RunDirectory
    from mmgan.engine.stop import GraceExpired, Stopped
    from mmgan.errors import StorageError

    if overwrite and resume is not None:
        raise click.ClickException("--overwrite starts a run over and --resume continues one: give one of them")
    if resume is not None and str(resume) != "auto" and str(resume).lower() == "auto" and not resume.exists():
        raise click.ClickException(f"--resume {resume}: there is no run directory {resume}; --resume auto (lower "
                                   "case) continues the run in --out, or starts it")
    if resume is not None and str(resume) == "auto":
        if out is None:
            raise click.ClickException("--resume auto needs --out: the run directory to continue or to start")
        if (out / "config.toml").is_file():  # continue it with its own config; the flags apply as with --resume
            resume, out, config_file = out, None, None
        else:
            resume = None
    if resume is not None and (init_trunk is not None or freeze_trunk):
        _check_trunk_flags_on_resume(resume, init_trunk, freeze_trunk)
    overrides = (*overrides, f"run.init_trunk={init_trunk}") if init_trunk is not None else overrides
    overrides = (*overrides, "run.freeze_trunk=true") if freeze_trunk else overrides
    config = cfg.resolve(get_modality, plugins=plugins, config_file=config_file, resume_dir=resume, data=data,
                         steps=steps, batch_size=batch_size, seed=seed, out=out, overrides=overrides)
    run_dir = Path(config.run.out)
    if overwrite and init_trunk is not None and Path(init_trunk).resolve() == run_dir.resolve():
        raise click.ClickException(f"--init-trunk {init_trunk} is the run --overwrite would remove: copy its export "
                                   "elsewhere first, or choose another --out")
    if overwrite and RunDirectory(run_dir).holds_run():
        removed = RunDirectory(run_dir).overwrite()
        click.echo(f"--overwrite: removed {', '.join(p.name for p in removed)} of the run in {run_dir}", err=True)
    trainer = Trainer(config, resume=resume is not None, progress=not no_progress)
    try:
        trainer.fit()
    except Stopped as stop:
        if trainer.accelerator.is_local_main_process:  # one line on each machine
            click.echo(f"\n{stop}, checkpoint written; continue with: mmgan run --resume {run_dir}", err=True)
        sys.exit(stop.exit_code)
    except GraceExpired as late:
        click.echo(f"\n{late} at step {trainer.step}; continue from the last checkpoint with: mmgan run --resume "
                   f"{run_dir}", err=True)
        sys.exit(late.exit_code)
    except KeyboardInterrupt:
        # the last checkpoint is intact (they are renamed into place only once complete)
        click.echo(f"\ninterrupted at step {trainer.step}, nothing more written; continue from the last checkpoint "
                   f"with: mmgan run --resume {run_dir}", err=True)
        sys.exit(130)
    except StorageError as exc:
        raise click.ClickException(f"step {trainer.step}: {exc}; then continue with: mmgan run --resume "
                                   f"{run_dir}") from None
    if trainer.accelerator.is_main_process:
        click.echo(f"run written to {run_dir} (samples/, checkpoints/, export/, metrics.jsonl)")
    # everything is written before the last barrier. A thread may still wait in the process group's teardown
    # (do not join it), and the interpreter's own teardown of gloo's objects can hang too (a finished rank 1
    # waited there past a 300 s CI timeout after rank 0 exited): a rank of a distributed run leaves at once
    if distributed.teardown_stuck or trainer.accelerator.num_processes > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(0)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(as_json: bool) -> None:
    """List installed plugins: name, version, source, hooks, modalities and the modality methods they write."""
    infos = describe_plugins()
    if as_json:
        click.echo(json.dumps([info.__dict__ for info in infos], indent=2))
        return
    for info in infos:
        mods = ", ".join(info.modalities) or "-"
        click.echo(f"{info.name} {info.version}  ({info.source})  modalities: {mods}")
        click.echo(f"    hooks: {', '.join(info.hooks) or '-'}")
        if info.methods:
            click.echo(f"    modality methods: {', '.join(info.methods)}")


def _check_trunk_flags_on_resume(resume: Path, init_trunk: Path | None, freeze_trunk: bool) -> None:
    """--init-trunk and --freeze-trunk start a run: on --resume they must say what the run was started with
    (faults row 76: they were recorded in config.toml, but the trunk was not loaded and froze mid-run)."""
    from mmgan.config import read_toml

    recorded = read_toml(resume / "config.toml").get("run", {}) if (resume / "config.toml").is_file() else {}
    same_source = init_trunk is None or str(init_trunk) == str(recorded.get("init_trunk", ""))
    same_freeze = not freeze_trunk or bool(recorded.get("freeze_trunk", False))
    if not (same_source and same_freeze):
        source = recorded.get("init_trunk")
        started = f"with --init-trunk {source}" if source else "without --init-trunk"
        started += " and --freeze-trunk" if recorded.get("freeze_trunk") else ""
        raise click.ClickException(f"--init-trunk and --freeze-trunk start a run; {resume} was started {started}: "
                                   "resume it without them, or start a new run (--out) with them")


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("-n", "num", type=int, default=64, show_default=True, help="Number of samples.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Output file, e.g. grid.png.")
@click.option("--modality", help="Which modality, for a multi-task run.")
@click.option("--seed", type=int, default=0, show_default=True, help="Noise seed.")
@click.option("--last", is_flag=True, help="Use the last step's export, not the best one the run kept (select_by).")
def generate(run_dir: Path, num: int, output: Path, modality: str | None, seed: int, last: bool) -> None:
    """Sample from a run's exported EMA generator, its best one if it kept one (safetensors; nothing is
    unpickled)."""
    from mmgan.evaluation.inference import load_generator, pick_modality, sample
    from mmgan.files import check_not_overwriting, check_writable

    if num < 1:
        raise click.ClickException(f"-n must be positive, got {num}")
    if output.is_dir():
        raise click.ClickException(f"-o {output} is a directory; give a file name such as {output / 'grid.png'}")
    name = pick_modality(run_dir, modality)
    check_not_overwriting(output, "-o", run_dir)
    check_writable(output)
    generator, config = load_generator(run_dir, name, last=last)
    samples = sample(generator, name, config, num, seed)
    written = calls.write_samples(name, samples.float(), output, config, None)
    if not written:
        raise click.ClickException(f"no installed plugin writes {name!r} samples")
    for path in written:
        click.echo(f"wrote {path}")


@cli.command(name="eval")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--data", metavar="SOURCE", help="Real samples: builtin:NAME or a path [default: the run's own].")
@click.option("-n", "num", type=int, help="Samples in each set, real and generated [default: the "
              "modality's eval_samples: 5000 images, 32 speech clips].")
@click.option("--batch-size", type=int, default=250, show_default=True, help="Batch size for generating.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the noise and the real-sample choice.")
@click.option("--modality", help="Which modality, for a multi-task run.")
@click.option("--device", default=None, show_default="cuda if available, else cpu",
              help="Where the generator and the feature networks run.")
@click.option("--out", type=click.Path(path_type=Path), help="Report file [default: RUN/eval.json].")
@click.option("--last", is_flag=True, help="Use the last step's export, not the best one the run kept (select_by).")
@click.option("--no-memorisation", is_flag=True,
              help="Skip the data-copying check (docs/trust.md).")
def eval_command(run_dir: Path, data: str | None, num: int, batch_size: int, seed: int, modality: str | None,
                 device: str | None, out: Path | None, last: bool, no_memorisation: bool,
                 **plugin_options: Any) -> None:
    """Measure a run's exported generator against real samples; no download (docs/metrics.md)."""
    from mmgan.engine.devices import resolve_device
    from mmgan.errors import StorageError
    from mmgan.evaluation.scoring import evaluate_run, format_table, write_report
    from mmgan.files import check_not_overwriting, check_writable

    # options the plugins added (mmgan_command_options), for their mmgan_evaluate hooks
    options = {name: value for name, value in plugin_options.items() if value is not None}
    target = out or Path(run_dir) / "eval.json"
    check_not_overwriting(target, "--out", run_dir)
    if Path(run_dir).is_dir():
        check_writable(target, "the report")  # before the evaluation, not after it
    report = evaluate_run(run_dir, modality, data, num, batch_size, seed, resolve_device(device), options, last=last,
                          memorisation=not no_memorisation)
    click.echo(f"{report['modality']} generator of {run_dir} ({report['export']} export, step {report['step']}) "
               f"vs {report['data']}, "
               f"n={report['num_samples']}, seed={seed}")
    click.echo(format_table(report["metrics"]))
    try:
        click.echo(f"wrote {write_report(target, report)}")
    except StorageError as exc:  # the metrics are not lost: they go to stdout as JSON
        click.echo(json.dumps(report))
        raise click.ClickException(f"{exc}; the report is printed above as JSON") from None


@cli.command()
@click.argument("runs", metavar="RUN...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path),
              help="Report directory [default: RUN/report; needed with several runs].")
def report(runs: tuple[Path, ...], out: Path | None) -> None:
    """Write a static HTML report of RUN (config, facts, curves, metrics, samples) that opens from disk;
    with several runs, side by side, their config differences first (docs/report.md)."""
    from mmgan.report import write_report

    index = write_report(runs, out)
    click.echo(f"wrote {index} (open it in a browser: {index.resolve().as_uri()})")


@cli.command(name="check-plugin")
@click.argument("modality")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE", help="Override one config value.")
@click.option("--steps", type=int, default=30, show_default=True, help="Training steps in all.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Batch size of the checks.")
def check_plugin_command(modality: str, overrides: tuple[str, ...], steps: int, batch_size: int) -> None:
    """Check a modality's plugin: shapes, samples, gradients, and a few steps of training."""
    from mmgan.cli.check_plugin import check_plugin

    if steps < 2:
        raise click.ClickException(f"--steps must be at least 2, got {steps}")
    if batch_size < 2:  # the sample-spread checks compare samples within a batch (one gives a std of nan)
        raise click.ClickException(f"--batch-size must be at least 2 (the checks compare samples), got {batch_size}")
    report = check_plugin(modality, overrides, steps=steps, batch_size=batch_size)
    for line in report.lines():
        click.echo(line)
    if report.errors:
        raise click.ClickException(f"{len(report.errors)} check(s) of {modality} failed")


@cli.command(name="new-plugin")
@click.argument("name")
@click.option("--modality", is_flag=True, help="A modality skeleton; without it, a loss term for every modality.")
@click.option("--shape", type=click.Choice(["sequence", "image"]), default=None,
              help="With --modality, its skeleton: sequence (a 1-D signal; the default) or image (3x32x32 RGB).")
@click.option("-o", "--out", "parent", type=click.Path(path_type=Path), default=Path("."), show_default=True,
              help="Directory in which the package directory mmgan-NAME is created.")
def new_plugin(name: str, modality: bool, shape: str | None, parent: Path) -> None:
    """Write a pip-installable plugin package: entry point, skeleton, README and a passing test."""
    from mmgan.cli.scaffold import write_plugin
    from mmgan.contract.manager import modalities

    pm = get_plugin_manager()
    if pm.get_plugin(name) is not None or name in modalities(pm):
        raise click.ClickException(f"plugin name {name!r} is taken by an installed plugin or modality (see mmgan "
                                   "plugins): a package of that name would shadow it; choose another name")
    root = write_plugin(name, parent, modality=modality, shape=shape)
    click.echo(f"wrote {root}; next: pip install -e '{root}[test]' && python -m pytest -q {root}")


# core commands to which plugins may add options (cli.add_option in mmgan_register_commands); their values reach the
# plugins' hooks (eval: EvalContext.options)
PLUGIN_OPTION_COMMANDS = ("eval",)


def _option_adder(command: click.Command) -> Callable[[click.Option], None]:
    taken = {opt for param in command.params for opt in getattr(param, "opts", [])}

    def add(option: click.Option) -> None:
        clash = taken.intersection(option.opts)
        if clash:
            raise PluginError(f"a plugin adds option {', '.join(sorted(clash))} to mmgan {command.name}, which "
                              "already has it")
        taken.update(option.opts)
        command.params.append(option)
    return add


def _add_plugin_options(command: click.Command, pm: Any) -> None:
    """The options contract 6's plugins add to ``command`` (``mmgan_command_options``)."""
    pm.hook.mmgan_command_options(command=command.name, add=_option_adder(command))


def build_cli() -> click.Group:
    """The CLI with every plugin's commands added (once per process)."""
    if not getattr(cli, "_plugin_commands_added", False):
        try:
            pm = get_plugin_manager()
            pm.hook.mmgan_register_commands(cli=cli)
            for name in PLUGIN_OPTION_COMMANDS:
                _add_plugin_options(cli.commands[name], pm)
        except MMGANError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        cli._plugin_commands_added = True
    return cli


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM outside training (which stops with a checkpoint): one line, not silence


def main() -> None:
    """Console-script entry point."""
    import signal

    signal.signal(signal.SIGTERM, _terminated)
    build_cli()(prog_name="mmgan")
