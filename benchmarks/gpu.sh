#!/usr/bin/env bash
# GPU readiness in one command: a smoke test (image + speech training in fp32 and in bf16, generate, vocode,
# eval of both modalities), then the throughput benchmarks (train_image.py, vocoder.py), all into one
# results file. Under 5 minutes on one GPU; on a machine without a GPU (or with --tiny) the same steps at
# tiny sizes, in about a minute (CI runs that: tests/test_multinode.py).
#
#   bash benchmarks/gpu.sh                      # results in runs/gpu/results.md
#   bash benchmarks/gpu.sh --tiny --out /tmp/g  # tiny sizes, whatever the machine
#
# Python: $PYTHON, else python3. torch is never installed or replaced: the machine's own (CUDA) torch is used
# as it is, and pip gets a constraint pinning it. When mmgan or one of its other dependencies is missing, it
# is installed from ./wheels (no network needed) if that folder is there, else from the index. Make ./wheels
# on a machine with network, for the GPU machine's Python version (wheels/ is in .gitignore):
#
#   bash benchmarks/gpu.sh --download-wheels    # = pip download --no-deps --only-binary=:all: -d wheels
#                                               #   <mmgan's dependency closure here, torch and CUDA left out>
#                                               #   setuptools  [--python-version $WHEELS_PYTHON --platform
#                                               #   manylinux2014_x86_64 when WHEELS_PYTHON=3.12, say, is set]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY="${PYTHON:-python3}"
MODE=auto
OUT=runs/gpu
while [ $# -gt 0 ]; do
    case "$1" in
        --tiny) MODE=tiny ;;
        --out) OUT="$2"; shift ;;
        --download-wheels) MODE=download ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
export PYTHONPATH="$ROOT:$ROOT/plugins${PYTHONPATH:+:$PYTHONPATH}"

if [ "$MODE" = download ]; then
    # the installed versions of what mmgan needs, recursively; torch, triton and NVIDIA's libraries stay out
    "$PY" - > "$ROOT/wheels.txt" <<'EOF'
import importlib.metadata as md
import re
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib
skip = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*)$")
with open("pyproject.toml", "rb") as f:
    todo, seen = list(tomllib.load(f)["project"]["dependencies"]), {}
while todo:
    name = re.split(r"[^A-Za-z0-9._-]", todo.pop(), maxsplit=1)[0].lower().replace("_", "-")
    if name in seen or skip.match(name):
        continue
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        continue
    seen[name] = dist.version
    todo += [r for r in dist.requires or [] if "extra ==" not in r]
print("\n".join(f"{n}=={v}" for n, v in sorted(seen.items())))
print("setuptools>=77")
EOF
    platform=()
    if [ -n "${WHEELS_PYTHON:-}" ]; then
        platform=(--python-version "$WHEELS_PYTHON" --platform manylinux2014_x86_64)
    fi
    "$PY" -m pip download --no-deps --only-binary=:all: "${platform[@]}" -d "$ROOT/wheels" -r "$ROOT/wheels.txt"
    rm "$ROOT/wheels.txt"
    du -sh "$ROOT/wheels"
    exit 0
fi

# ---- dependencies: never torch ----------------------------------------------------------------------------
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "gpu.sh: $PY has no torch; install the machine's own (CUDA) build first: this script never installs torch" >&2
    exit 1
fi
DEPS="import importlib.metadata as m, pluggy, click, accelerate, webdataset, scipy, numpy, PIL, safetensors, tqdm, jinja2
m.entry_points(group='mmgan')['image']"
if ! "$PY" -c "$DEPS" 2>/dev/null; then
    pin="$(mktemp)"
    "$PY" -c "import torch; print('torch==' + torch.__version__)" > "$pin"  # keep this torch, or fail
    if [ -d "$ROOT/wheels" ]; then
        echo "installing mmgan and its missing dependencies from $ROOT/wheels (offline)"
        "$PY" -m pip install --quiet --no-index --find-links "$ROOT/wheels" -c "$pin" -e "$ROOT"
    elif "$PY" -c "import pluggy, click, accelerate, webdataset, scipy, numpy, PIL, safetensors, tqdm, jinja2" 2>/dev/null; then
        echo "installing mmgan itself (its dependencies are there)"
        "$PY" -m pip install --quiet --no-deps --no-build-isolation -e "$ROOT"
    else
        echo "installing mmgan and its missing dependencies from the package index"
        "$PY" -m pip install --quiet -c "$pin" -e "$ROOT"
    fi
    rm -f "$pin"
    "$PY" -c "$DEPS"
fi

if [ "$MODE" = auto ]; then
    MODE=$("$PY" -c "import torch; print('gpu' if torch.cuda.is_available() else 'tiny')")
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RESULTS="$OUT/results.md"
started=$(date +%s)

# ---- smoke test: the CLI's commands in one process (one torch import), each timed -------------------------
"$PY" - "$OUT" "$MODE" <<'EOF'
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import mmgan
from mmgan.cli import build_cli

out, mode = Path(sys.argv[1]), sys.argv[2]
tiny = mode == "tiny"
gpu = torch.cuda.is_available() and not tiny
if tiny:
    steps, batch, image_n, speech_n = 4, 4, 130, 4  # FD needs more samples than its 128 features
    sizes = ["image.ngf=8", "image.ndf=8", "image.nz=16", "trunk.width=32", "trunk.depth=1", "speech.ngf=4",
             "speech.ndf=4", "speech.disc_channels=32", "speech.segment_length=2048", "train.num_samples=4",
             "train.ema_bn_batches=1"]
else:  # the default networks (DCGAN at 32x32, MelGAN), at a batch a GPU is meant for
    steps, batch, image_n, speech_n = 300, 32, 2000, 32
    sizes = []
sizes += [f"train.sample_every={steps}", f"train.checkpoint_every={steps}", "train.eval_every=0",
          "train.log_every=10" if not tiny else "train.log_every=1"]
cli = build_cli()
rows = []


def command(what, *args):
    """Run one `mmgan` command in this process; a row: what, ok, seconds, note."""
    start = time.perf_counter()
    try:
        cli.main(args=[str(a) for a in args], prog_name="mmgan", standalone_mode=False)
        ok, note = True, ""
    except SystemExit as exc:
        ok, note = exc.code in (0, None), f"exit {exc.code}"
    except Exception as exc:  # the row says what failed; the script goes on to the rest
        ok, note = False, f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
    rows.append([what, ok, time.perf_counter() - start, note])
    print(f"{'ok  ' if ok else 'FAIL'} {rows[-1][2]:7.1f} s  {what} {note}", flush=True)
    return ok


def steps_per_s(run):
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    rates = [r["steps_per_s"] for r in lines if "steps_per_s" in r][1:]  # the first includes start-up
    return statistics.median(rates) if rates else float("nan")


sets = [a for s in sizes for a in ("--set", s)]
for precision in ("no", "bf16"):
    run = out / f"train-{'fp32' if precision == 'no' else precision}"
    if command(f"train image+speech, {'fp32' if precision == 'no' else precision}, {steps} steps x batch {batch}",
               "run", "--plugin", "image", "--plugin", "speech", "--out", run, "--overwrite", "--steps", steps,
               "--batch-size", batch, "--no-progress", "--set", f"train.mixed_precision={precision}", *sets):
        rows[-1][3] = f"{steps_per_s(run):.2f} steps/s (image + speech), {json.loads((run / 'run.json').read_text())['device']}"
run = out / "train-bf16"
command("generate 64 images (CPU)", "generate", run, "--modality", "image", "-n", 64, "-o", out / "grid.png")
clip = sorted((run / "samples" / "speech").glob("*.wav"))
if clip:
    command("vocode a sample clip (CPU)", "vocode", run, clip[0], "-o", out / "vocoded.wav")
else:
    rows.append(["vocode a sample clip (CPU)", False, 0.0, "no speech sample was written"])
device = "cuda" if gpu else "cpu"
command(f"eval image, n={image_n} ({device})", "eval", run, "--modality", "image", "-n", image_n, "--device", device,
        "--out", out / "eval-image.json")
command(f"eval speech, n={speech_n} ({device})", "eval", run, "--modality", "speech", "-n", speech_n, "--device",
        device, "--out", out / "eval-speech.json")

name = torch.cuda.get_device_name(0) if gpu else platform.processor() or platform.machine()
lines = [f"# GPU readiness ({mode} mode)", "",
         f"- machine: {name}; torch {torch.__version__} (CUDA {torch.version.cuda}); mmgan {mmgan.__version__}; "
         f"Python {platform.python_version()}",
         f"- bf16 on this GPU: {torch.cuda.is_bf16_supported() if gpu else 'n/a (CPU)'}", "",
         "## Smoke test", "", "| step | ok | seconds | note |", "|:--|:--|--:|:--|"]
lines += [f"| {w} | {'yes' if ok else '**NO**'} | {s:.1f} | {n} |" for w, ok, s, n in rows]
for name in ("image", "speech"):
    report = out / f"eval-{name}.json"
    if report.exists():
        metrics = json.loads(report.read_text())["metrics"]
        lines.append(f"\n{name} eval: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, (int, float)) else f"{k} {v}"
                                                    for k, v in metrics.items()))
(out / "results.md").write_text("\n".join(lines) + "\n")
(out / "smoke_failed").unlink(missing_ok=True)
if not all(ok for _, ok, _, _ in rows):
    (out / "smoke_failed").write_text("")
EOF

# ---- throughput benchmarks -----------------------------------------------------------------------------------
threads=$(nproc 2>/dev/null || echo 2)
if [ "$MODE" = gpu ]; then
    image=(--device cuda --sizes 64 32 --batch 64 --rounds 5 --block 8 --compare-bf16)
    # vocoder.py times its contenders on the CPU (it has no --device yet): the GPU host's CPU figures
    speech=(--threads "$threads" --seconds 10 --rounds 3 --block 1 --batch 16 --train-rounds 2 --train-block 1)
else
    image=(--device cpu --threads "$threads" --sizes 32 --batch 4 --rounds 1 --block 1 --warmup 1 --compare-bf16)
    # the smoke's tiny vocoder, vocoding only: its training step is timed by the smoke test above
    speech=(--threads "$threads" --run "$OUT/train-bf16" --seconds 0.5 --rounds 1 --block 1 --warmup 0
            --train-rounds 0)
fi
failed=0
for bench in train_image vocoder; do
    status=ok
    if [ "$bench" = train_image ]; then args=("${image[@]}"); else args=("${speech[@]}"); fi
    if [ "$bench" = vocoder ]; then env=(env ACCELERATE_USE_CPU=1); else env=(env); fi
    {
        echo
        echo "## benchmarks/$bench.py ${args[*]}"
        echo
        echo '```'
    } >> "$RESULTS"
    if ! "${env[@]}" "$PY" "benchmarks/$bench.py" "${args[@]}" --json "$OUT/$bench.json" >> "$RESULTS" 2>"$OUT/$bench.err"; then
        failed=1
        status=FAIL
        echo "FAILED: $(tail -n 1 "$OUT/$bench.err")" >> "$RESULTS"
    fi
    echo '```' >> "$RESULTS"
    echo "$status benchmarks/$bench.py"
done

total=$(( $(date +%s) - started ))
printf '\nTotal: %d s (%s mode).\n' "$total" "$MODE" >> "$RESULTS"
echo "wrote $RESULTS ($total s)"
if [ -e "$OUT/smoke_failed" ] || [ "$failed" != 0 ]; then
    echo "gpu.sh: some steps failed; see $RESULTS" >&2
    exit 1
fi
