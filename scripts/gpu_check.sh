#!/usr/bin/env bash
# The device check: `make gpu-check` on a machine with a GPU, `make gpu-check-smoke` anywhere.
#
#   scripts/gpu_check.sh [--smoke] [--out DIR] [--budget SECONDS] [--jobs N]
#
# For a bare GPU machine with its own torch and no network. It
#   0. makes the project importable without fetching anything: `pip install --no-index
#      --no-build-isolation --no-deps -e .`, else PYTHONPATH=src; it names any missing
#      dependency and stops;
#   1. runs the tests that take `--device` on the GPU (tests/conftest.py);
#   2. measures Pattern-3 against torchvision, eager and compiled, fp32 and bf16
#      channels-last, and SimpleCNN's training images/s per data path
#      (benchmarks/device_check.py);
#   3. trains the positive control, experiments/gpu/clutter-control.yaml (standard CBAM
#      against the plain network on cluttered Fashion-MNIST canvases, full training set),
#      with --jobs runs on the GPU at once, stopped cleanly at what remains of the budget,
#      and writes its report. `preattn ablate experiments/gpu/clutter-control.yaml --out
#      DIR/grid` resumes it; the claims' grids (experiments/gpu/clutter-claim*.yaml) share
#      its runs in that folder.
# Everything goes to DIR (default runs/gpu-check): tests.txt, device_check.md/.json, grid/
# (runs and report.md). The budget (default 480 s) is shared: the tests get at most 90 s,
# the measurements at most 200 s, the grid the rest less 40 s for its report.
#
# Fashion-MNIST (the canvases are built from it): the grid reads it from data/fashion-mnist/
# in the working tree (git ignores data/). Copy the four IDX files there before moving the tree to the machine:
#   mkdir -p data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist/
# (Debian's dataset-fashion-mnist package; ~30 MB.) --smoke runs without them (the
# measurements use stand-in files; the grid is skipped when the files are absent).
#
# --smoke: the same steps on the CPU at toy sizes (one epoch of 256 images per run), under
# two minutes; CI runs it. (The grid reads Debian's Fashion-MNIST there when data/ has none.)
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
OUT=runs/gpu-check
BUDGET=480
JOBS=4
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --out) OUT="$2"; shift ;;
    --budget) BUDGET="$2"; shift ;;
    --jobs) JOBS="$2"; shift ;;
    *) echo "gpu_check.sh: unknown argument $1 (expected --smoke, --out DIR, --budget S, --jobs N)" >&2; exit 2 ;;
  esac
  shift
done
PY="${PYTHON:-python3}"
STARTED=$(date +%s)
elapsed() { echo $(( $(date +%s) - STARTED )); }
mkdir -p "$OUT"

# 0. importable without the network
if ! "$PY" -c "import preattn" 2>/dev/null; then
  if ! "$PY" -m pip install --quiet --no-index --no-build-isolation --no-deps -e . 2>/dev/null; then
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
    echo "preattn: not installable offline here; using PYTHONPATH=src"
  fi
fi
"$PY" - <<'PYEOF'
import importlib.util
import sys
need = ["torch", "torchvision", "numpy", "safetensors", "tqdm", "matplotlib", "yaml", "scipy",
        "pytest"]
missing = [m for m in need if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_check.sh: missing Python packages {missing}; install them from wheels "
             "copied to this machine (pip install --no-index --find-links WHEELS ...)")
import torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
      + (f" ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} device(s))"
         if torch.cuda.is_available() else ""))
PYEOF

if [ "$SMOKE" = 1 ]; then
  DEVICE=cpu
  BENCH=(--smoke)
  GRID=(--override epochs=1 --override limit_train=256 --override limit_test=256)
  JOBS=2
else
  DEVICE=cuda
  BENCH=()
  GRID=()
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check.sh: no CUDA device (use --smoke on a CPU)')"
fi
DATA=data/fashion-mnist

# 1. tests on the device (a failure is reported at the end; the other steps still run)
echo "== tests on $DEVICE ($(elapsed) s)"
set +e
timeout 90 "$PY" -m pytest -q -p no:cacheprovider --device "$DEVICE" -m "not slow" \
  tests/test_on_device.py tests/test_compat.py tests/test_device_batches.py tests/test_train.py \
  > "$OUT/tests.txt" 2>&1
TESTS=$?
set -e
tail -n 3 "$OUT/tests.txt"

# 2. measurements
echo "== measurements ($(elapsed) s)"
DATA_ARGS=()
[ -d "$DATA" ] && DATA_ARGS=(--data-dir "$DATA")
timeout 200 "$PY" benchmarks/device_check.py --device "$DEVICE" --out "$OUT" \
  "${DATA_ARGS[@]}" "${BENCH[@]}" || echo "measurements stopped at their 200 s (see above)"

# 3. the grid, stopped at what remains of the budget
LEFT=$(( BUDGET - $(elapsed) - 40 ))
if [ -d "$DATA" ]; then export PREATTN_DATA="$PWD/data"; fi
if ! "$PY" -c "from preattn.data.registry import find_idx_files as f; f('fashion-mnist', None)" \
    2>/dev/null; then
  echo "== grid skipped: no Fashion-MNIST files in $DATA (see the header of this script)"
elif [ "$LEFT" -le 10 ]; then
  echo "== grid skipped: no time left in the $BUDGET s budget"
else
  echo "== grid, $LEFT s ($(elapsed) s)"
  "$PY" -m preattn ablate experiments/gpu/clutter-control.yaml --out "$OUT/grid" \
    --jobs "$JOBS" --time-limit "$LEFT" "${GRID[@]}" | tail -n 30
fi
echo "== done in $(elapsed) s; results in $OUT"
if [ "$TESTS" != 0 ]; then
  echo "gpu_check.sh: the tests on $DEVICE failed (exit $TESTS); see $OUT/tests.txt" >&2
  exit 1
fi
