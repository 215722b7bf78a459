"""A speech run's learning curve against Griffin-Lim: every periodic evaluation vs the minutes of training.

    PYTHONPATH=.:plugins python benchmarks/speech_curve.py RUN [RUN ...] [--plot docs/images/speech_curve.png]

A run trained with ``train.eval_every`` logs ``speech/eval/<metric>`` on held-out clips (``speech.eval_data``,
else its own source's held-out clips) and ``train_cpu_s``, the CPU seconds its threads spent in training steps
so far over every session (no sampling, evaluation or checkpoints; ``train_s`` is the same in wall-clock
seconds, used where a run has no ``train_cpu_s``). This script joins the two: one row per evaluation, with the
CPU-minutes of training it took to get there (on 1 thread: its wall-clock minutes on an idle core), and
Griffin-Lim (32 iterations, the ``griffin-lim`` row of ``quality_speech.py``) on exactly the clips the run
evaluates on (the same source, count, seed and length), computed once and kept in ``RUN/griffin_lim.json``.
Then, per measure, the first evaluation that beats Griffin-Lim. Train the run in pieces with ``mmgan run
--resume RUN``: ``train_cpu_s`` and ``train_s`` carry over.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine_header  # noqa: E402
from quality_speech import griffin_lim, mel_to_magnitude  # noqa: E402

from mmgan.config import read_toml  # noqa: E402
from mmgan_speech.mel import MelConfig, mel_spectrogram  # noqa: E402
from mmgan_speech.metrics import HELD_OUT_SECONDS, held_out_clips, speech_metrics  # noqa: E402

MEL = MelConfig()
# the measures in the order the docs print them, and whether higher is better
MEASURES = {"mel_l1": False, "mcd_db": False, "pesq_wb": True, "stoi": True, "mrstft": False}


def run_settings(run: Path) -> dict:
    """What the run's evaluations scored on: source, clip count, seed (the run's), clip seconds."""
    config = read_toml(run / "config.toml")
    speech, train = config["speech"], config["train"]
    count = speech.get("eval_samples") or min(train["eval_samples"], 32)
    return {"data": speech.get("eval_data") or speech["data"], "clips": count, "seed": config["run"]["seed"],
            "seconds": HELD_OUT_SECONDS, "gl_iterations": 32}


def griffin_lim_scores(run: Path) -> dict[str, float]:
    """Griffin-Lim's mean metrics on the run's evaluation clips, cached in ``RUN/griffin_lim.json``."""
    settings = run_settings(run)
    cache = run / "griffin_lim.json"
    if cache.is_file():
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if saved.get("settings") == settings:
            return saved["metrics"]
    totals: dict[str, list[float]] = {}
    for clip in held_out_clips(settings["data"], settings["clips"], settings["seed"], settings["seconds"]):
        clip = clip[: clip.shape[0] // MEL.hop_length * MEL.hop_length]
        magnitude = mel_to_magnitude(mel_spectrogram(clip, MEL))
        wave = griffin_lim(magnitude, settings["gl_iterations"])
        for name, value in speech_metrics(wave, clip, MEL.sample_rate, MEL.sample_rate).items():
            if value == value:  # NaN (PESQ finding no speech) is left out, as the run's evaluation does
                totals.setdefault(name, []).append(value)
    metrics = {name: sum(values) / len(values) for name, values in totals.items()}
    cache.write_text(json.dumps({"settings": settings, "metrics": metrics}, indent=1), encoding="utf-8")
    return metrics


def curve(run: Path) -> list[dict]:
    """One row per evaluation: step, CPU-minutes of training (``train_cpu_s`` of that step's log line, else
    ``train_s``) and metrics."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    key = "train_cpu_s" if any("train_cpu_s" in r for r in records) else "train_s"
    seconds = {r["step"]: r[key] for r in records if key in r}
    rows = []
    for r in records:
        metrics = {k.split("/")[-1]: v for k, v in r.items() if k.startswith("speech/eval/")}
        if not metrics:
            continue
        logged = [s for s in seconds if s <= r["step"]]
        rows.append({"step": r["step"], "minutes": seconds[max(logged)] / 60 if logged else float("nan"),
                     **metrics})
    return rows


def beats(value: float, reference: float, higher: bool) -> bool:
    return value > reference if higher else value < reference


def report(run: Path, rows: list[dict], gl: dict[str, float]) -> None:
    measures = [m for m in MEASURES if m in gl and any(m in r for r in rows)]
    print(f"\n{run} ({len(rows)} evaluations; Griffin-Lim on the same clips: {run_settings(run)})")
    print("| step | CPU-minutes | " + " | ".join(measures) + " |")
    print("|---:|---:|" + "---:|" * len(measures))
    for r in rows:
        cells = []
        for m in measures:
            mark = "**" if m in r and beats(r[m], gl[m], MEASURES[m]) else ""
            cells.append(f"{mark}{r[m]:.3f}{mark}" if m in r else "n/a")
        print(f"| {r['step']} | {r['minutes']:.1f} | " + " | ".join(cells) + " |")
    print("| griffin-lim | | " + " | ".join(f"{gl[m]:.3f}" for m in measures) + " |")
    for m in measures:
        first = next((r for r in rows if m in r and beats(r[m], gl[m], MEASURES[m])), None)
        if first:
            print(f"- {m}: passes Griffin-Lim ({gl[m]:.3f}) at step {first['step']} "
                  f"({first['minutes']:.1f} CPU-minutes)")
        else:
            print(f"- {m}: does not pass Griffin-Lim ({gl[m]:.3f}) within this curve")


def plot(curves: dict[Path, tuple[list[dict], dict[str, float]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = [m for m in MEASURES if m != "mrstft"]
    fig, axes = plt.subplots(1, len(measures), figsize=(4 * len(measures), 3.2))
    for ax, m in zip(axes, measures, strict=True):
        for i, (run, (rows, gl)) in enumerate(curves.items()):
            points = [(r["minutes"], r[m]) for r in rows if m in r]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", ms=3, color=f"C{i}", label=run.name)
            if m in gl:
                ax.axhline(gl[m], ls="--", color=f"C{i}", lw=1, label=f"Griffin-Lim ({run.name})")
        ax.set_title(m + (" (higher is better)" if MEASURES[m] else " (lower is better)"), fontsize=9)
        ax.set_xlabel("CPU-minutes of training")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def triple(run: Path, out: Path, clip_index: int = 0, phase_iterations: int | None = None) -> None:
    """One held-out clip of the run's evaluation set as log-mels, side by side: the real clip, the run's
    vocoder (its best export; a vocos head's projections as ``phase_iterations`` if given) and Griffin-Lim, plus
    the three as WAV files beside the PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmgan.api import load_generator
    from mmgan_speech.audio import write_wav
    from mmgan_speech.vocode import vocode

    settings = run_settings(run)
    clips = held_out_clips(settings["data"], clip_index + 1, settings["seed"], settings["seconds"])
    clip = list(clips)[clip_index]
    clip = clip[: clip.shape[0] // MEL.hop_length * MEL.hop_length]
    log_mel = mel_spectrogram(clip, MEL)
    generator, _ = load_generator(run, "speech")
    if phase_iterations is not None:  # as `mmgan vocode --phase-iterations`
        generator.heads["speech"].phase_iterations = phase_iterations
    with torch.inference_mode():
        waves = {"real": clip, "mmgan": vocode(generator, log_mel),
                 "griffin-lim": griffin_lim(mel_to_magnitude(log_mel), settings["gl_iterations"])}
    fig, axes = plt.subplots(1, 3, figsize=(12, 3), sharey=True)
    for ax, (name, wave) in zip(axes, waves.items(), strict=True):
        mel = mel_spectrogram(wave.float(), MEL)
        ax.imshow(mel.numpy(), origin="lower", aspect="auto", vmin=-11.5, vmax=float(log_mel.max()), cmap="magma")
        scores = ""
        if name != "real":
            measured = speech_metrics(wave, clip, MEL.sample_rate, MEL.sample_rate)
            pesq = measured.get("pesq_wb")  # only with the audio-metrics extra
            scores = f" (MCD {measured['mcd_db']:.2f} dB" + (f", PESQ {pesq:.2f})" if pesq is not None else ")")
        ax.set_title(name + scores, fontsize=9)
        ax.set_xlabel("frame")
        write_wav(out.with_name(f"{out.stem}_{name}.wav"), wave.numpy(), MEL.sample_rate)
    axes[0].set_ylabel("mel bin")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out} and its three WAV files")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--plot", type=Path, help="a PNG of every measure against the minutes of training")
    parser.add_argument("--phase-iterations", type=int, help="--triple: the vocos head projections (default: the run)")
    parser.add_argument("--triple", type=Path, help="a PNG of real / mmgan / Griffin-Lim log-mels of one "
                        "held-out clip of the first run (and the three WAVs beside it)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine_header(args.threads)
    curves = {}
    for run in args.runs:
        rows = curve(run)
        if not rows:
            sys.exit(f"error: {run}/metrics.jsonl has no speech/eval/ records (train with train.eval_every > 0)")
        curves[run] = (rows, griffin_lim_scores(run))
        report(run, *curves[run])
    if args.plot is not None:
        plot(curves, args.plot)
    if args.triple is not None:
        triple(args.runs[0], args.triple, phase_iterations=args.phase_iterations)


if __name__ == "__main__":
    main()
