"""``mmgan vocode``, the speech plugin's command: registered by ``SpeechPlugin.mmgan_register_commands``.

Imported when the CLI starts (``mmgan --help`` included), so torch and the networks are imported inside
the command, not here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click

NAME = "speech"


def register_vocode_command(cli: click.Group) -> None:
    """``mmgan vocode``: a waveform from a .wav or a log-mel .npy with a run's vocoder."""

    @cli.command("vocode")
    @click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
    @click.argument("source", metavar="INPUT", type=click.Path(path_type=Path))
    @click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Output .wav file.")
    @click.option(
        "--chunk-frames",
        type=int,
        default=1024,
        show_default=True,
        help="Mel frames per chunk (memory, not output: each chunk sees the generator's receptive field).",
    )
    @click.option("--last", is_flag=True, help="Use the last step's export, not the best one the run kept.")
    @click.option(
        "--precision",
        type=click.Choice(["fp32", "bf16", "auto"]),
        default="fp32",
        show_default=True,
        help="bf16: the generator under bf16 autocast (its inverse STFT stays fp32); auto: bf16 where the CPU "
        "computes it natively.",
    )
    @click.option(
        "--phase-iterations",
        type=click.IntRange(0, 256),
        default=None,
        help="Fast Griffin-Lim projections of a vocos head's spectrum before its inverse STFT (default: the "
        "run's speech.phase_iterations); more: slower, and nearer the magnitude it predicts.",
    )
    def vocode_command(
        run_dir: Path, source: Path, output: Path, chunk_frames: int, last: bool, precision: str,
        phase_iterations: int | None,
    ) -> None:
        """Waveform from INPUT (a .wav: copy synthesis; a .npy log-mel (80, frames)) with RUN's vocoder."""
        import torch

        from mmgan.evaluation.inference import load_generator, pick_modality
        from mmgan.files import check_not_overwriting, check_writable
        from mmgan_speech.audio import write_wav_stream
        from mmgan_speech.mel import MelConfig
        from mmgan_speech.networks import remove_weight_norm
        from mmgan_speech.vocode import read_mel_input, resolve_precision, vocode_chunks

        if chunk_frames < 1:
            raise click.ClickException(f"--chunk-frames must be positive, got {chunk_frames}")
        if output.is_dir():
            raise click.ClickException(f"-o {output} is a directory; give a file name such as {output / 'out.wav'}")
        check_not_overwriting(output, "-o", run_dir, inputs=(source,))
        check_writable(output)  # before the work, not after it
        generator, _ = load_generator(run_dir, pick_modality(run_dir, NAME), last=last)
        remove_weight_norm(generator)
        if phase_iterations is not None:
            head = generator.heads[pick_modality(run_dir, NAME)]
            if not hasattr(head, "phase_iterations"):
                raise click.ClickException(f"--phase-iterations: {run_dir}'s vocoder ({type(head).__name__}) has "
                                           "no phase projections; only speech.generator = \"vocos\" has")
            head.phase_iterations = phase_iterations  # chunked vocoding widens its overlap to match
        precision = resolve_precision(precision, torch.device("cpu"))  # load_generator loads on the CPU
        mel = read_mel_input(source)
        chunks = vocode_chunks(generator, mel, chunk_frames=chunk_frames, progress=True, precision=precision)

        def finite(pieces: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
            for piece in pieces:
                if not torch.isfinite(piece).all():
                    hint = "; try --precision fp32" if precision == "bf16" else ""
                    raise click.ClickException(
                        f"{source}: the vocoder made NaN or infinite samples in {precision}{hint}"
                    )
                yield piece

        sample_rate = MelConfig().sample_rate
        samples = write_wav_stream(output, finite(chunks), sample_rate)
        click.echo(f"wrote {output} ({samples / sample_rate:.2f} s, {precision})")
