#!/bin/sh
# The pilot of the cluttered test bed, in resumable pieces (run it again after an
# interruption: finished runs are kept, interrupted ones resumed). Reports go to
# docs/evidence/pilot/<grid name>/. Standard attention first (none, cbam, se), then pre.
set -e
cd "$(dirname "$0")/../.."
PREATTN="${PREATTN:-.venv/bin/python -m preattn}"
JOBS="${JOBS:-2}"
RUNS="${RUNS:-runs/pilot}"
for variants in none,cbam,se pre; do
  for task in items patches; do
    $PREATTN ablate "experiments/pilot/clutter-$task.yaml" --out "$RUNS/clutter-$task" \
      --jobs "$JOBS" --variants "$variants" --report-dir "docs/evidence/pilot/clutter-$task"
  done
done
