#!/bin/sh
# The Fashion-MNIST evidence of docs/evidence.md, in resumable pieces: run it again after an
# interruption and finished runs are kept, interrupted ones resumed. Each claim's report
# goes to docs/evidence/<grid name>/.
set -e
cd "$(dirname "$0")/.."
PREATTN="${PREATTN:-.venv/bin/python -m preattn}"
JOBS="${JOBS:-2}"
# claims 1, 2, 5, 6 share one base (3,000 training images): one pool of runs, trained
# together, a report each
$PREATTN ablate experiments/claim2-lambda-control.yaml experiments/claim1-selectivity.yaml \
    experiments/claim5-vs-cbam-and-se.yaml experiments/claim6-vs-wider.yaml \
    --out runs/evidence/fashion-mnist --jobs "$JOBS" --report-dir docs/evidence
# claims 3 and 4 share a smaller base (1,000 training images)
$PREATTN ablate experiments/claim3-warmup-small-data.yaml experiments/claim4-early-layers.yaml \
    --out runs/evidence/fashion-mnist-small --jobs "$JOBS" --report-dir docs/evidence
