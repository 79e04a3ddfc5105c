#!/bin/sh
# The confirmatory grids of the cluttered test bed, in resumable pieces (run it again after an
# interruption: finished runs are kept, interrupted ones resumed). The grids on 8,000
# canvases share one pool of runs (a variant of the same name and options is one run,
# whichever grid asks for it), the small-data grids of claim 3 (warmup*.yaml, 1,000
# canvases) another; reports go to docs/evidence/clutter/<grid name>/. The positive control
# first, then claims 5 (Pattern-3 against CBAM), 2 (λ-control), 5 with λ by depth, 6 (cost),
# SE-PRE beside λ by depth (which completes claim 5's grid), 3 (warm-up on small data,
# attention that acts first), 4 (early blocks) and 7 (MobileNetV2).
# Arguments, if any, name the grids to run, in this order and nothing else
# (`sh experiments/clutter/run.sh early mobilenet`); a name that is not one of them stops the
# script before anything runs.
set -e
cd "$(dirname "$0")/../.."
PREATTN="${PREATTN:-.venv/bin/python -m preattn}"
JOBS="${JOBS:-2}"
RUNS="${RUNS:-runs/clutter}"
PIECES="control:none,cbam control:pre placement:cbam,pre control:se \
  lambda:pre,pre-free lambda-vs-none:none,pre-free lambda:pre-depth lambda-vs-none:pre-depth \
  placement-depth:cbam,pre-depth cost:pre,none,none-wide placement-depth:se-pre \
  warmup-depth:pre-depth,pre-depth-warm warmup:pre,pre-warm \
  early:pre-block2-free,pre-block1-free mobilenet:none,pre-depth mobilenet:se-dw"
GRIDS=" "
for piece in $PIECES; do
  case "$GRIDS" in *" ${piece%%:*} "*) ;; *) GRIDS="$GRIDS${piece%%:*} " ;; esac
done
for wanted in "$@"; do
  case "$GRIDS" in
    *" $wanted "*) ;;
    *) echo "run.sh: grid must be one of$GRIDS(or none for all), got '$wanted'" >&2; exit 2 ;;
  esac
done
for piece in $PIECES; do
  grid="${piece%%:*}" variants="${piece#*:}"
  if [ $# -gt 0 ]; then
    case " $* " in *" $grid "*) ;; *) continue ;; esac
  fi
  case "$grid" in warmup*) pool="$RUNS-small" ;; *) pool="$RUNS" ;; esac
  $PREATTN ablate "experiments/clutter/$grid.yaml" --out "$pool" \
    --jobs "$JOBS" --variants "$variants" --report-dir "docs/evidence/clutter/$grid"
done
