#!/bin/sh
# The Fashion-MNIST evidence of docs/evidence.md, in resumable pieces: run it again after an
# interruption and finished runs are kept, interrupted ones resumed. Each claim's report
# goes to docs/evidence/<grid name>/.
set -e
cd "$(dirname "$0")/.."
PREATTN="${PREATTN:-.venv/bin/python -m preattn}"
JOBS="${JOBS:-2}"
# claims 1, 2, 4, 5, 6 share one base: one pool of runs, trained together, a report each
$PREATTN ablate experiments/claim2-lambda-control.yaml experiments/claim1-selectivity.yaml \
    experiments/claim5-vs-cbam-and-se.yaml experiments/claim6-vs-wider.yaml \
    experiments/claim4-early-layers.yaml \
    --out runs/evidence/fashion-mnist --jobs "$JOBS" --report-dir docs/evidence
# claim 3 has a base of its own (1,000 training images)
$PREATTN ablate experiments/claim3-warmup-small-data.yaml \
    --out runs/evidence/fashion-mnist-small --jobs "$JOBS" \
    --report-dir docs/evidence/claim3-warmup-small-data
