#!/bin/sh
# The Fashion-MNIST evidence of docs/evidence.md, in resumable pieces: run it again after an
# interruption and finished runs are kept, interrupted ones resumed. Each claim's report
# goes to docs/evidence/<grid name>/; docs/evidence.md keeps a table of what has run.
# Order: the primary contrasts first (claims 5, 6, 2, 1), then the rest.
set -e
cd "$(dirname "$0")/.."
PREATTN="${PREATTN:-.venv/bin/python -m preattn}"
JOBS="${JOBS:-1}"
RUNS="${RUNS:-runs/evidence}"  # where the runs live (any folder)
run() {  # run GRID OUT: one grid into a pool of runs, its report into docs/evidence/
  $PREATTN ablate "$1" --out "$2" --jobs "$JOBS" --report-dir "docs/evidence/$(basename "$1" .yaml)"
}
# claims 2, 4, 5, 6 share one base (full training set, 4 epochs): one pool of runs
POOL="$RUNS/fm-full"
run experiments/claim5-vs-cbam-and-se.yaml "$POOL"
run experiments/claim6-vs-wider.yaml "$POOL"
run experiments/claim2-lambda-control.yaml "$POOL"
run experiments/claim1-selectivity.yaml "$RUNS/fm-noise"
run experiments/claim1-clutter.yaml "$RUNS/fm-clutter"
run experiments/claim4-early-layers.yaml "$POOL"
run experiments/claim2-dose-response.yaml "$POOL"
run experiments/claim3-warmup-small-data.yaml "$RUNS/fm-small"
