#!/bin/sh
# The pilot of the cluttered test bed, in resumable pieces (run it again after an
# interruption: finished runs are kept, interrupted ones resumed). Reports go to
# docs/evidence/pilot/<grid name>/. The contrast the pilot looks for first (cbam against
# none, whole distractor items), then SE, the patch task, Pattern-3, and the small-data task
# of claim 3 (1,000 canvases trained to the schedule's end), then standard CBAM and SE on it.
set -e
cd "$(dirname "$0")/../.."
PREATTN="${PREATTN:-.venv/bin/python -m preattn}"
JOBS="${JOBS:-2}"
RUNS="${RUNS:-runs/pilot}"
for piece in items:none,cbam items:se patches:none,cbam items:pre patches:se patches:pre \
  small-data:pre,pre-warm,none small-data:cbam,se; do
  task="${piece%%:*}" variants="${piece#*:}"
  $PREATTN ablate "experiments/pilot/clutter-$task.yaml" --out "$RUNS/clutter-$task" \
    --jobs "$JOBS" --variants "$variants" --report-dir "docs/evidence/pilot/clutter-$task"
done
