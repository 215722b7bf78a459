"""An independent held-out speech folder: sentences spoken by espeak-ng's English voices, offline.

    python benchmarks/espeak_speech.py --out runs/espeak [--voices en-us,en-gb,en-gb-scotland,en-us+f3] [--clips 4]

No run trains on it: it checks a vocoder trained on another folder (``benchmarks/flite_speech.py``'s, say) on
a synthesiser, voices and sentences it never heard, with ``benchmarks/quality_speech.py RUN --data OUT/test``. The
issue that asked for the flite set kept espeak-ng aside for exactly this. Writes ``OUT/test/<voice>_<nnn>.wav``
(16-bit mono at espeak-ng's 22.05 kHz, the plugin's own rate) and ``OUT/manifest.json`` beside the folder (a
folder holding a manifest.json is read as WebDataset shards). The sentences are
``flite_speech.sentences(--seed)`` (Python standard-library docstrings), by default in another order than the
flite set's (seed 1 against 0). Debian's ``espeak-ng`` package provides the program and voices.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flite_speech import sentences, synthesise  # noqa: E402

VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-us+f3")  # two accents, a third, and a female variant


def speak(voice: str, text: str, path: Path) -> tuple[float, int]:
    """``text`` spoken by espeak-ng's ``voice`` into the WAV ``path`` (written beside it, then renamed)."""
    partial = path.with_name(f".{path.name}.part")
    # anything on stderr (an unknown voice, missing voice data) is a failure, whatever the exit status
    return synthesise(["espeak-ng", "-v", voice, "-w", str(partial), text], path, partial,
                      f"espeak-ng -v {voice}", text, strict_stderr=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="a new or empty folder")
    parser.add_argument("--voices", default=",".join(VOICES), help="comma-separated espeak-ng voices (--voices=en)")
    parser.add_argument("--clips", type=int, default=4, help="sentences per voice (default 4)")
    parser.add_argument("--seed", type=int, default=1, help="order of the sentences (flite_speech.py uses 0)")
    args = parser.parse_args()
    if args.clips < 1:
        parser.error("--clips must be at least 1")
    if shutil.which("espeak-ng") is None:
        sys.exit("error: espeak-ng is not on PATH; install Debian's espeak-ng package (apt-get install espeak-ng)")
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        sys.exit(f"error: {args.out} exists and is not an empty folder; choose a new --out")
    voices = list(dict.fromkeys(v.strip() for v in args.voices.split(",") if v.strip()))
    if not voices:
        parser.error("--voices names no voice")

    pool = iter(sentences(args.seed))
    (args.out / "test").mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(args.clips):
        for voice in voices:
            sentence = next(pool, None)
            if sentence is None:
                sys.exit("error: the standard library gave fewer sentences than asked; ask for fewer --clips")
            path = args.out / "test" / f"{voice.replace('+', '_')}_{i:03d}.wav"
            seconds, rate = speak(voice, sentence, path)
            files.append({"path": path.relative_to(args.out).as_posix(), "voice": voice, "sentence": sentence,
                          "seconds": round(seconds, 3), "sample_rate": rate})
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip()
    manifest = {"generator": "benchmarks/espeak_speech.py", "espeak-ng": version, "python": sys.version.split()[0],
                "seed": args.seed, "voices": voices, "files": files}
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    minutes = sum(f["seconds"] for f in files) / 60
    print(f"{args.out}: {len(files)} clips, {minutes:.1f} min of audio, voices {', '.join(voices)}")


if __name__ == "__main__":
    main()
