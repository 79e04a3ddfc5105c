#!/bin/sh
# The confirmatory grids of the cluttered test bed, in resumable pieces (run it again after an
# interruption: finished runs are kept, interrupted ones resumed). All grids share one pool of
# runs (a variant of the same name and options is one run, whichever grid asks for it);
# reports go to docs/evidence/clutter/<grid name>/. The positive control first, then claims
# 5 (Pattern-3 against CBAM), 2 (λ-control), 5 with λ by depth, 6 (cost), 7 (MobileNetV2)
# and 4 (early blocks).
set -e
cd "$(dirname "$0")/../.."
PREATTN="${PREATTN:-.venv/bin/python -m preattn}"
JOBS="${JOBS:-2}"
RUNS="${RUNS:-runs/clutter}"
for piece in control:none,cbam control:pre placement:cbam,pre control:se \
  lambda:pre,pre-free lambda-vs-none:none,pre-free lambda:pre-depth lambda-vs-none:pre-depth \
  placement-depth:cbam,pre-depth placement-depth:se-pre cost:pre,none,none-wide \
  mobilenet:none,pre-depth mobilenet:se-dw early:pre-block2-free,pre-block1-free; do
  grid="${piece%%:*}" variants="${piece#*:}"
  $PREATTN ablate "experiments/clutter/$grid.yaml" --out "$RUNS" \
    --jobs "$JOBS" --variants "$variants" --report-dir "docs/evidence/clutter/$grid"
done
