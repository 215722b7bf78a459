"""Measured numbers live on the results page (docs/benchmarks.md) and its history (docs/experiments/), with
their command, machine and date; the other pages and the config help link there instead of restating them,
so that none goes on quoting a figure the next measurement changed. This fails, naming file and line, when
the README, a hand-written page of docs/ or the config help (docs/config.md, one field per line) quotes a
measurement (a real-time factor, a speed ratio, a throughput, a duration, a peak memory, a quality score, a
table of scores) on a line without a link to a section of benchmarks.md or to a page of experiments/; and
when a link to a section of a page names one that does not exist.

Settings and definitions are not measurements and stay: defaults, paper hyperparameters, network sizes,
thresholds the code uses (`hop 256`, `Adam 2e-4`, `about 240k parameters`, `to 1e-5 (tested)`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# not hand-written: the results themselves, and pages tools/docs.py generates (config.md is checked as the
# config help, below)
NOT_CHECKED = {"benchmarks.md", "api.md", "cli.md", "config.md"}
# sections that are the measured record the results page links to (benchmarks.md: "Several modalities in
# one run ... are measured in multitask.md#does-sharing-help"), checked no further
RECORDS = {"multitask.md": "Does sharing help?"}

_NUMBER = r"\d[\d,]*(?:\.\d+)?"
MEASUREMENTS = {
    "real-time factor": rf"\b{_NUMBER}x real[- ]time\b",
    "speed ratio": rf"\b{_NUMBER}x (?:faster|slower|fp32|bf16|as fast|the speed)\b|\b{_NUMBER}x at \d+x\d+\b",
    "throughput": rf"\b{_NUMBER}\s?(?:img|images|samples|items|steps|clips)/s\b",
    "time per step": rf"\b{_NUMBER}\s?(?:s|ms|seconds)(?:/step\b|\s+(?:per|a|an)\s+(?:[\w-]+\s+)?"
                     r"(?:step|image|clip|evaluation|sample)s?\b)",
    # "3 min 58 s", "under 15 minutes", "took 83 s", "27.2 CPU-minutes"; not a threshold ("clips under 0.1 s")
    "duration": rf"\b\d+\s?min(?:utes?)?\s+\d+\s?s\b"
                rf"|\b(?:about|under|in|within|took|takes)\s+{_NUMBER}\s?(?:min|minutes|hours?)\b"
                rf"|\b(?:took|takes)\s+(?:about\s+)?{_NUMBER}\s?(?:s|seconds)\b|\b{_NUMBER}\s?CPU-minutes\b",
    "peak memory": rf"\bpeak(?:s|ed)?\b[^.;|]{{0,25}}?\b{_NUMBER}\s?(?:MiB|GiB|MB|GB)\b"
                   rf"|\b{_NUMBER}\s?(?:MiB|GiB|MB|GB) (?:peak|of peak)\b|\btook {_NUMBER}\s?(?:MiB|GiB|MB|GB)\b",
    # case-sensitive: the metric's name as prose writes it, then its value ("FD 9.44", "MCD (dB) 0.47")
    "quality score": rf"\b(?:FD|FID|SWD|KID|MCD|PESQ|STOI|MR-STFT|mel L1)(?:\s\(dB\))?(?:\s+of|:|\s*=)?"
                     rf"\s+{_NUMBER}\b",
    # a table row of scores: three cells in a row that are each a number with two or more decimals
    "table of scores": r"^\s*\|(?:[^|]*\|)*?(?:\s*\**-?\d+\.\d{2,}\**\s*\|){3}",
}
_PATTERNS = {kind: re.compile(pattern) for kind, pattern in MEASUREMENTS.items()}
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
# a link to a section of the results page, or to a page of its history
_RESULTS = re.compile(r"benchmarks\.md#[\w-]+|experiments/[\w-]+\.md")


def quoted_measurements(line: str) -> list[str]:
    """The measurements a line of prose quotes, as ``kind: text``; link targets are not prose."""
    prose = _LINK_TARGET.sub("]()", line)
    return [f"{kind}: {m.group(0)}" for kind, pattern in _PATTERNS.items() for m in pattern.finditer(prose)]


def unlinked_measurements(line: str) -> list[str]:
    return [] if _RESULTS.search(line) else quoted_measurements(line)


def hand_written_pages() -> list[Path]:
    pages = [p for p in sorted(DOCS.glob("*.md")) if p.name not in NOT_CHECKED]
    return [ROOT / "README.md", *pages]


def checked_pages() -> list[Path]:
    """The hand-written pages, and config.md: the config help, one field's comment per line."""
    return [*hand_written_pages(), DOCS / "config.md"]


def checked_lines(page: Path) -> list[tuple[int, str]]:
    """``(line number, line)`` of a page, without the sections in :data:`RECORDS`."""
    record, skipping, inside, kept = RECORDS.get(page.name), None, False, []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        inside = inside != line.startswith("```")
        heading = None if inside else re.match(r"(#+) (.*)", line)
        if heading and skipping is not None and len(heading.group(1)) <= skipping:
            skipping = None
        if heading and heading.group(2).strip() == record:
            skipping = len(heading.group(1))
        if skipping is None:
            kept.append((number, line))
    return kept


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, seen, inside = set(), {}, False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = not inside
        elif not inside and (heading := re.match(r"#+ (.*)", line)):
            base = slug(heading.group(1))
            found.add(f"{base}-{seen[base]}" if base in seen else base)
            seen[base] = seen.get(base, 0) + 1
    return found


@pytest.mark.parametrize("text", [
    "The default scores FD 9.44 at 3 seeds.",
    "SWD 55.0 against 75.1",
    "MCD 0.47 dB and PESQ 2.6",
    "it vocodes 10 s of audio at 338x real time on 2 threads",
    "bf16 is 1.43x at 32x32",
    "about 3.3x slower per image on CPU",
    "rendered at about 15,000 images/s at 64x64",
    "a GAN step takes 3.3 s per step",
    "about 1.1 s per 4-s clip",
    "wall clock 3 min 58 s",
    "it took 83 s on the busy machine",
    "trains in under 15 minutes on 2 CPU cores",
    "after about 100 CPU-minutes",
    "an hour of audio peaks at 511 MiB",
    "peak memory 2.0 GB",
    "| built-in | **0.121** | **0.979** | **0.463** | **3.18** | **0.955** |",
])
def test_a_quoted_measurement_is_found(text):
    assert quoted_measurements(text)
    assert unlinked_measurements(text)


@pytest.mark.parametrize("text", [
    "n_fft 1024, hop 256, Hann 1024",
    "The paper's Adam settings (2e-4, betas 0.5, 0.999) are the core defaults.",
    "ngf = ndf = 64; about 240k parameters, about 1 MB",
    "chunked equals unchunked to 1e-5 (tested at chunk sizes 16, 37, 299)",
    "`not enough space for the checkpoint of step 4 in runs/x: about 40.7 MiB needed, 2.8 MiB free`",
    "`select_by` (`fd`); every 500 steps on 1000 samples; MelGAN's 3x32x32 RGB",
    "FD needs at least 129 samples; STOI's 384-ms segments",
    "the 40x goal; the MLP x3: 12.6M here",
    "it beats Griffin-Lim on MCD, PESQ and STOI at 3 seeds on both held-out sets",
    "silent ones and ones under 0.1 s skipped; (under about 0.4 s of speech)",
    "| `pesq_wb` | wide-band PESQ | 1.04 .. 4.64 | higher |",
    "| 46 | vocode 8 kHz, stereo, silent, 50 ms input | written (1.00 s, 1.00 s, 1.00 s, 0.05 s) |",
])
def test_a_setting_or_a_definition_is_not_a_measurement(text):
    assert not quoted_measurements(text)


def test_a_measurement_on_a_line_that_links_to_the_results_is_allowed():
    assert not unlinked_measurements("FD 9.44 ([benchmarks.md](benchmarks.md#image-quality))")
    assert not unlinked_measurements("338x real time ([speech-vocoder.md](experiments/speech-vocoder.md#x))")
    assert not unlinked_measurements("# 10 s at 50x real time (docs/benchmarks.md#vocoding-real-time-factors)")
    assert unlinked_measurements("FD 9.44 ([metrics.md](metrics.md#image-metrics))")
    assert unlinked_measurements("FD 9.44 (docs/benchmarks.md)"), "the page is not the section that holds it"


def test_pages_quote_no_measurement_without_linking_the_results():
    found = [f"{page.relative_to(ROOT)}:{number}: {hit}"
             for page in checked_pages() for number, line in checked_lines(page)
             for hit in unlinked_measurements(line)]
    assert not found, ("measured numbers belong on docs/benchmarks.md (or docs/experiments/); link the section "
                       "that holds them instead:\n" + "\n".join(found))


def test_links_to_a_section_name_one_that_exists():
    """The links above point at sections; a renamed heading must not leave them pointing nowhere."""
    link = re.compile(r"((?:\.\./|docs/)?(?:experiments/)?[\w-]+\.md)#([\w-]+)")
    broken = []
    for page in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for target, anchor in link.findall(line):
                resolved = (ROOT / target if target.startswith("docs/") else page.parent / target).resolve()
                if not resolved.is_file() or anchor not in anchors(resolved):
                    broken.append(f"{page.relative_to(ROOT)}:{number}: {target}#{anchor}")
    assert not broken, "links to sections that do not exist:\n" + "\n".join(broken)
