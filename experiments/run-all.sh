#!/bin/sh
# The Fashion-MNIST evidence of docs/evidence.md, in resumable pieces: run it again after an
# interruption and finished runs are kept, interrupted ones resumed. Each claim's report
# goes to docs/evidence/<grid name>/; docs/evidence.md keeps a table of what has run.
# Order: the primary contrasts first (claims 5, 6, 2, then 1), then everything else.
# JOBS=2 on a 2-core machine trains two runs at once with one thread each (about 1.15x the
# runs per hour of one run with two threads).
set -e
cd "$(dirname "$0")/.."
PREATTN="${PREATTN:-.venv/bin/python -m preattn}"
JOBS="${JOBS:-1}"
RUNS="${RUNS:-runs/evidence}"  # where the runs live (any folder)
run() {  # run GRID OUT [ablate options]: one grid into a pool of runs, its report into docs/
  grid="$1" out="$2"
  shift 2
  $PREATTN ablate "$grid" --out "$out" --jobs "$JOBS" \
    --report-dir "docs/evidence/$(basename "$grid" .yaml)" "$@"
}
# claims 2, 4, 5, 6 share one base (full training set, 4 epochs): one pool of runs
POOL="$RUNS/fm-full"
SHARED="experiments/claim5-vs-cbam-and-se.yaml experiments/claim6-vs-wider.yaml
  experiments/claim2-lambda-control.yaml"
# 1. the primary contrasts: pre against cbam (5), none-wide (6), pre-free (2); none/pre (1)
# shellcheck disable=SC2086
$PREATTN ablate $SHARED --out "$POOL" --jobs "$JOBS" --report-dir docs/evidence \
  --variants pre,cbam,none-wide,pre-free
run experiments/claim1-selectivity.yaml "$RUNS/fm-noise" --variants none,pre
# 2. everything else
# shellcheck disable=SC2086
$PREATTN ablate $SHARED experiments/claim4-early-layers.yaml \
  experiments/claim2-dose-response.yaml --out "$POOL" --jobs "$JOBS" --report-dir docs/evidence
run experiments/claim1-selectivity.yaml "$RUNS/fm-noise"
run experiments/claim1-clutter.yaml "$RUNS/fm-clutter"
run experiments/claim3-warmup-small-data.yaml "$RUNS/fm-small"
