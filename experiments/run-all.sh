#!/bin/sh
# The Fashion-MNIST evidence of docs/evidence.md: every grid, in resumable pieces. Run it
# again after an interruption: finished runs are kept, interrupted ones resumed. Each
# claim's report goes to docs/evidence/<grid name>/.
set -e
cd "$(dirname "$0")/.."
PREATTN="${PREATTN:-.venv/bin/python -m preattn}"
JOBS="${JOBS:-2}"
shared() {
    $PREATTN ablate "experiments/$1.yaml" --out runs/evidence/fashion-mnist \
        --jobs "$JOBS" --report-dir "docs/evidence/$1"
}
shared claim2-lambda-control
shared claim1-selectivity
shared claim5-vs-cbam-and-se
shared claim6-vs-wider
# a different base (1,000 training images): its own pool of runs
$PREATTN ablate experiments/claim3-warmup-small-data.yaml \
    --out runs/evidence/fashion-mnist-small --jobs "$JOBS" \
    --report-dir docs/evidence/claim3-warmup-small-data
shared claim4-early-layers
