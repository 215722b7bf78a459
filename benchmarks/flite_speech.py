"""A real-speech folder for the vocoder benchmarks: English sentences spoken by flite's 16 kHz voices, offline.

    python benchmarks/flite_speech.py --out runs/flite [--voices awb,rms,slt,kal16] [--train 100] [--test 16]

Writes ``OUT/train/<voice>_<nnn>.wav`` and ``OUT/test/<voice>_<nnn>.wav`` (16-bit mono at flite's 16 kHz; the
speech plugin resamples on read) and ``OUT/manifest.json`` (split, voice, sentence and length of every file).
Each split is a plain folder of WAVs, so ``mmgan run --plugin speech --data OUT/train`` trains on one and
``benchmarks/quality_speech.py RUN --data OUT/test`` measures on the other.

The sentences come from the docstrings of Python standard-library modules (read with ``ast`` from the
interpreter's own source files; nothing is imported or downloaded): the sentences of 6 to 25 words made only of
letters, spaces and plain punctuation, deduplicated, sorted, then shuffled by ``--seed``. Every clip speaks its
own sentence; the test split takes the first ones, so no test sentence is ever in train and the test split stays
the same whatever ``--train`` is. Every voice speaks in both splits. The same Python version gives the same
sentences; the manifest records them. Debian's ``flite`` package (``flite -lv``) provides the voices.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import random
import re
import shutil
import subprocess
import sys
import wave
from pathlib import Path

VOICES = ("awb", "rms", "slt", "kal16")  # flite's 16 kHz general voices (kal is 8 kHz, awb_time speaks only times)
# pure-Python standard-library modules with prose docstrings; read as source, never imported
# fmt: off
MODULES = (
    "argparse", "asyncio.events", "asyncio.tasks", "bisect", "calendar", "cmd", "codecs", "collections",
    "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "doctest",
    "email.message", "enum", "filecmp", "fractions", "ftplib", "functools", "getopt", "gettext", "glob", "gzip",
    "heapq", "http.client", "http.cookiejar", "imaplib", "inspect", "ipaddress", "locale", "logging", "mailbox",
    "netrc", "numbers", "optparse", "os", "pathlib", "pdb", "pickle", "pickletools", "pprint", "pydoc", "queue",
    "random", "sched", "selectors", "shlex", "shutil", "smtplib", "socket", "statistics", "string", "subprocess",
    "tarfile", "tempfile", "textwrap", "threading", "timeit", "trace", "traceback", "typing", "unittest.case",
    "urllib.parse", "urllib.request", "warnings", "weakref", "zipfile",
)
# fmt: on
PLAIN_SENTENCE = re.compile(r"[A-Z][A-Za-z ,;'-]*[a-z][.!?]")


def docstrings(module: str) -> list[str]:
    """The module's, its classes' and its functions' docstrings, in source order ([] if it has no .py source)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return []
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef))]
    return [text for node in nodes if (text := ast.get_docstring(node))]


def plain_sentences(text: str) -> list[str]:
    """Sentences of 6 to 25 words of letters and plain punctuation, with no code-like (camelCase, CAPS) word."""
    found = []
    for paragraph in re.split(r"\n\s*\n", text):
        for sentence in re.split(r"(?<=[.!?])\s+", " ".join(paragraph.split())):
            words = sentence.split()
            if (
                6 <= len(words) <= 25
                and PLAIN_SENTENCE.fullmatch(sentence)
                and all(word[1:] == word[1:].lower() for word in words)
            ):
                found.append(sentence)
    return found


def sentences(seed: int) -> list[str]:
    """Every plain standard-library sentence once (first spelling of case-insensitive duplicates), shuffled by seed."""
    unique: dict[str, str] = {}
    for module in MODULES:
        for text in docstrings(module):
            for sentence in plain_sentences(text):
                unique.setdefault(sentence.lower(), sentence)
    ordered = sorted(unique.values())
    random.Random(seed).shuffle(ordered)
    return ordered


def flite_voices() -> set[str]:
    """The voices ``flite -lv`` lists."""
    listing = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=True).stdout
    return set(listing.partition(":")[2].split())


def synthesise(command: list[str], path: Path, partial: Path, what: str, text: str, strict_stderr: bool = False
               ) -> tuple[float, int]:
    """Run a synthesiser ``command`` that writes the WAV ``partial``, then rename it to ``path``: (seconds,
    rate). A failure (non-zero exit, no file, or with ``strict_stderr`` anything on stderr) is a one-line
    exit naming ``what`` and ``text``, and leaves no partial file behind."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not partial.is_file() or (strict_stderr and done.stderr.strip()):
        partial.unlink(missing_ok=True)
        raise SystemExit(f"error: {what} failed on {text!r}: {done.stderr.strip() or done.returncode}")
    with wave.open(str(partial), "rb") as clip:
        rate = clip.getframerate()
        seconds = clip.getnframes() / rate
    partial.replace(path)
    return seconds, rate


def speak(voice: str, text: str, path: Path) -> tuple[float, int]:
    """``text`` spoken by ``voice`` into the WAV ``path`` (written beside it, then renamed): (seconds, rate)."""
    partial = path.with_name(f".{path.name}.part")
    return synthesise(["flite", "-voice", voice, "-t", text, "-o", str(partial)], path, partial,
                      f"flite -voice {voice}", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="a new or empty folder")
    parser.add_argument("--voices", default=",".join(VOICES), help="comma-separated flite voices (flite -lv)")
    parser.add_argument("--train", type=int, default=100, help="sentences per voice in train/")
    parser.add_argument("--test", type=int, default=16, help="sentences per voice in test/")
    parser.add_argument("--seed", type=int, default=0, help="shuffle of the sentences")
    args = parser.parse_args()
    if args.train < 1 or args.test < 1:
        parser.error("--train and --test must be at least 1")
    if shutil.which("flite") is None:
        sys.exit("error: flite is not on PATH; install Debian's flite package (apt-get install flite)")
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        sys.exit(f"error: {args.out} exists and is not an empty folder; choose a new --out")

    available = flite_voices()
    voices = []
    for voice in dict.fromkeys(v.strip() for v in args.voices.split(",") if v.strip()):
        if voice in available:
            voices.append(voice)
        else:  # flite falls back to its default voice without a word, so ask first
            print(f"note: flite has no voice {voice!r} (it has {', '.join(sorted(available))}); skipped")
    if not voices:
        sys.exit("error: none of the asked voices is available in flite")

    pool = iter(sentences(args.seed))
    needed = len(voices) * (args.train + args.test)
    files = []
    for split, count in (("test", args.test), ("train", args.train)):
        (args.out / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            for voice in voices:
                sentence = next(pool, None)
                if sentence is None:
                    sys.exit(f"error: {needed} sentences needed, the standard library gave fewer; ask for fewer")
                path = args.out / split / f"{voice}_{i:03d}.wav"
                seconds, rate = speak(voice, sentence, path)
                files.append(
                    {
                        "path": path.relative_to(args.out).as_posix(),
                        "split": split,
                        "voice": voice,
                        "sentence": sentence,
                        "seconds": round(seconds, 3),
                        "sample_rate": rate,
                    }
                )
        print(f"{split}: {count * len(voices)} clips written", file=sys.stderr)

    version = subprocess.run(["flite", "--version"], capture_output=True, text=True).stdout.split("version:")[-1]
    manifest = {
        "generator": "benchmarks/flite_speech.py",
        "flite": version.strip(),
        "python": sys.version.split()[0],
        "seed": args.seed,
        "voices": voices,
        "files": files,
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")

    print(f"{args.out}: voices {', '.join(voices)}")
    for split in ("train", "test"):
        rows = [f for f in files if f["split"] == split]
        minutes = sum(f["seconds"] for f in rows) / 60
        print(
            f"{split}: {len(rows)} clips, {minutes:.1f} min of audio, "
            f"{len({f['sentence'] for f in rows})} distinct sentences, {len(rows) // len(voices)} per voice"
        )


if __name__ == "__main__":
    main()
