#!/bin/sh
# The confirmatory grids of the cluttered test bed, in resumable pieces (run it again after an
# interruption: finished runs are kept, interrupted ones resumed). All grids share one pool of
# runs; reports go to docs/evidence/clutter/<grid name>/. The positive control first.
set -e
cd "$(dirname "$0")/../.."
PREATTN="${PREATTN:-.venv/bin/python -m preattn}"
JOBS="${JOBS:-2}"
RUNS="${RUNS:-runs/clutter}"
for piece in control:none,cbam control:pre placement:cbam,pre control:se; do
  grid="${piece%%:*}" variants="${piece#*:}"
  $PREATTN ablate "experiments/clutter/$grid.yaml" --out "$RUNS" \
    --jobs "$JOBS" --variants "$variants" --report-dir "docs/evidence/clutter/$grid"
done
