"""Peak memory (RSS) of `mmgan vocode` on a long input: an hour of audio as a .npy log-mel and as .wav files,
with an untrained vocos generator at the default sizes, each run in a fresh process.

    python benchmarks/vocode_memory.py                      # 60 minutes of audio, 1 thread
    python benchmarks/vocode_memory.py --minutes 10 --threads 2

Each input is a 10-s built-in utterance (SpeechLikeDataset(seed=1).clip(0, 10)) repeated to --minutes, written
a block at a time: a 22050 Hz mono 16-bit WAV (read as is), a 44100 Hz stereo 16-bit WAV (mixed down and
resampled block by block) and the .npy log-mel (80, frames) of the first, float32. Every case runs
`python -m mmgan vocode RUN INPUT -o OUT.wav` in its own process. "peak RSS" is that process's ru_maxrss
(os.wait4): it counts the pages of torch's shared libraries the process touched (130 to 220 MiB here,
depending on what the page cache holds). "anonymous" is the peak of its RssAnon
(/proc/PID/status, sampled every 20 ms): heap and tensors, the part that could grow with the input.

Two references, each in its own process too: `mmgan vocode` of the 10-s clip (what importing torch and
loading the generator cost, whatever the length), and `read_wav` + `mel_spectrogram_long` of the mono WAV:
what `mmgan vocode` held before it read WAVs in blocks (the whole wave and its mel), before vocoding.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.signal
import torch
from harness import machine_header

from mmgan.api import get_modality
from mmgan.config import resolve
from mmgan.engine import Trainer
from mmgan_speech.audio import write_wav_stream
from mmgan_speech.mel import MelConfig, mel_spectrogram
from mmgan_speech.speech_like import SpeechLikeDataset

MEL = MelConfig()
CLIP_SECONDS = 10
WHOLE_DECODE = (
    "import sys, torch; from mmgan_speech.audio import read_wav; from mmgan_speech.mel import mel_spectrogram_long; "
    "mel = mel_spectrogram_long(torch.from_numpy(read_wav(sys.argv[1]))); print(tuple(mel.shape))"
)


def repeated(clip: np.ndarray, total: int) -> Iterator[np.ndarray]:
    """``clip`` (samples,) or (samples, channels) repeated to ``total`` samples, a clip at a time."""
    for start in range(0, total, len(clip)):
        yield clip[: min(len(clip), total - start)]


def write_inputs(folder: Path, minutes: float) -> dict[str, Path]:
    """The mono WAV, the stereo 44.1 kHz WAV and the .npy mel of ``minutes`` of the repeated clip; and the clip."""
    clip = SpeechLikeDataset(seed=1).clip(0, CLIP_SECONDS).reshape(-1).numpy()
    clip = clip[: len(clip) // MEL.hop_length * MEL.hop_length]  # whole frames, so repeats tile the mel exactly
    total = round(minutes * 60 * MEL.sample_rate) // len(clip) * len(clip)
    paths = {"clip": folder / "clip.wav", "wav": folder / "long.wav", "wav44k": folder / "long44k.wav",
             "npy": folder / "long.npy"}  # fmt: skip
    write_wav_stream(paths["clip"], [clip], MEL.sample_rate)
    write_wav_stream(paths["wav"], repeated(clip, total), MEL.sample_rate)
    stereo = scipy.signal.resample_poly(clip, 2, 1)
    stereo = np.round(np.clip(np.stack([stereo, 0.8 * stereo], 1), -1, 1) * 32767).astype("<i2")
    with wave.open(str(paths["wav44k"]), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(2 * MEL.sample_rate)
        for block in repeated(stereo, 2 * total):
            out.writeframes(block.tobytes())
    mel = mel_spectrogram(torch.from_numpy(clip), MEL).numpy()
    frames = total // MEL.hop_length
    array = np.lib.format.open_memmap(paths["npy"], mode="w+", dtype=np.float32, shape=(MEL.n_mels, frames))
    for start in range(0, frames, mel.shape[1]):
        array[:, start : start + mel.shape[1]] = mel[:, : frames - start]
    array.flush()
    del array
    return paths


def rss_anon_mib(pid: int) -> float:
    """The process's anonymous resident memory (heap, tensors; not the mapped libraries), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # the process has exited between two samples: nothing resident any more
        return 0.0
    return 0.0


def peak_rss(command: list[str], threads: int, folder: Path) -> tuple[float, float, float, str]:
    """(peak RSS in MiB, peak anonymous RSS in MiB sampled every 20 ms, wall seconds, last output line) of
    ``command`` run in a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log = folder / "output.txt"
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        anon = 0.0
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            anon = max(anon, rss_anon_mib(process.pid))
            time.sleep(0.02)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    output = log.read_text(encoding="utf-8")
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{output}")
    return usage.ru_maxrss / 1024, anon, seconds, (output.strip().splitlines() or [""])[-1].split("\r")[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="minutes of audio per input (default 60)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the vocode processes (default 1)")
    parser.add_argument("--chunk-frames", type=int, default=1024, help="mmgan vocode --chunk-frames (default 1024)")
    parser.add_argument("--precision", default="fp32", help="mmgan vocode --precision (default fp32)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for the vocos run, e.g. trunk.depth=8 (repeatable)")  # fmt: skip
    args = parser.parse_args()
    machine_header(args.threads)

    with tempfile.TemporaryDirectory(prefix="mmgan-vocode-memory-") as tmp:
        folder = Path(tmp)
        overrides = ["speech.generator=vocos", "train.mixed_precision=no", *args.overrides]
        config = resolve(get_modality, plugins=["speech"], out=folder / "run", steps=1, seed=0,
                         overrides=overrides)  # fmt: skip
        Trainer(config, progress=False).export()  # the untrained generator, as a run's export/ holds it
        m, trunk = config.modalities["speech"], config.trunk
        print(f"generator {m.generator}, trunk width {trunk.width} depth {trunk.depth} kernel {trunk.kernel_size}")
        started = time.perf_counter()
        paths = write_inputs(folder, args.minutes)
        sizes = ", ".join(f"{name} {path.stat().st_size / 2**20:.0f} MiB" for name, path in paths.items())
        print(f"inputs ({args.minutes:g} min, written in {time.perf_counter() - started:.0f} s): {sizes}")

        vocode = [sys.executable, "-m", "mmgan", "vocode", str(folder / "run")]
        options = ["--chunk-frames", str(args.chunk_frames), "--precision", args.precision]
        cases = {
            f"vocode {CLIP_SECONDS} s .wav (fixed cost)": [*vocode, str(paths["clip"]), "-o", str(folder / "c.wav")],
            "vocode .npy mel": [*vocode, str(paths["npy"]), "-o", str(folder / "n.wav")],
            "vocode .wav 22.05 kHz mono": [*vocode, str(paths["wav"]), "-o", str(folder / "w.wav")],
            "vocode .wav 44.1 kHz stereo": [*vocode, str(paths["wav44k"]), "-o", str(folder / "s.wav")],
            "whole decode (before: read_wav + mel)": [sys.executable, "-c", WHOLE_DECODE, str(paths["wav"])],
        }
        print(f"\n{'case':40} {'peak RSS':>10} {'anonymous':>10} {'wall':>8}  output")
        for name, command in cases.items():
            command = command + options if command[:3] == vocode[:3] else command
            rss, anon, seconds, line = peak_rss(command, args.threads, folder)
            print(f"{name:40} {rss:6.0f} MiB {anon:6.0f} MiB {seconds:7.1f} s  {line.replace(tmp, '...')}")


if __name__ == "__main__":
    main()
