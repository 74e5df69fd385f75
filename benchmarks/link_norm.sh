#!/usr/bin/env bash
# Why does Link lower accuracy here? (docs/RESULTS.md, "Replicate and Link at full size".)
# `small`, SEL, 30 epochs, one setting per run:
#   mean  Replicate and Link, eq 12 as the paper's mean (Table 2's +Link cell);
#   sqrt  Replicate and Link, eq 12 as sum / sqrt(count) (`--neighbour-norm sqrt`), which keeps
#         the size of a linked node's two neighbours: tests whether the harm is that scale;
#   rep   Replicate without Link (Table 2's +Replicate cell): the control for
#         benchmarks/link_at_test.py, a network that never saw link edges.
# One lane of runs, one after another; taskset the lane to one core. Resumable: a finished run
# is skipped, an interrupted one continues from its last.pt.
#
#   benchmarks/link_norm.sh DATA OUT "SETTING:SEED ..."
#   taskset -c 1 benchmarks/link_norm.sh data/ave4143 runs/link_norm "sqrt:0 sqrt:1 sqrt:2 mean:0"
#
# AVEL (default avel-dgl) is the command to run, e.g. AVEL=".venv/bin/avel-dgl".
set -euo pipefail
data=$1 out=$2 jobs=$3
avel=${AVEL:-avel-dgl}
for job in $jobs; do
  setting=${job%%:*} seed=${job##*:}
  case $setting in
    mean|sqrt) opts=(--replicate --link --neighbour-norm "$setting") ;;
    rep) opts=(--replicate --no-link) ;;
    *) echo "link_norm.sh: unknown setting '$setting' (mean, sqrt or rep)" >&2; exit 2 ;;
  esac
  dir=$out/$setting/seed$seed
  if [ -f "$dir/results.json" ]; then
    continue
  fi
  if [ -f "$dir/last.pt" ]; then
    $avel train --resume "$dir" --quiet
  else
    $avel train --task sel --preset small "${opts[@]}" --data "$data" --out "$dir" --seed "$seed" --quiet
  fi
done
