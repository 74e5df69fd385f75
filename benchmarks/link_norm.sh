#!/usr/bin/env bash
# Is Link's harm the scale of eq 12's average? (docs/RESULTS.md, "Replicate and Link at full
# size".) `small`, SEL, 30 epochs, Replicate and Link on, eq 12 as the paper's mean or as
# sum / sqrt(count) (`--neighbour-norm sqrt`), which keeps the size of a linked node's two
# neighbours. One lane of runs, one after another; taskset the lane to one core. Resumable: a
# finished run is skipped, an interrupted one continues from its last.pt.
#
#   benchmarks/link_norm.sh DATA OUT "NORM:SEED ..."
#   taskset -c 1 benchmarks/link_norm.sh data/ave4143 runs/link_norm "sqrt:0 sqrt:1 sqrt:2 mean:0"
#
# AVEL (default avel-dgl) is the command to run, e.g. AVEL=".venv/bin/avel-dgl".
set -euo pipefail
data=$1 out=$2 jobs=$3
avel=${AVEL:-avel-dgl}
for job in $jobs; do
  norm=${job%%:*} seed=${job##*:}
  dir=$out/$norm/seed$seed
  if [ -f "$dir/results.json" ]; then
    continue
  fi
  if [ -f "$dir/last.pt" ]; then
    $avel train --resume "$dir" --quiet
  else
    $avel train --task sel --preset small --replicate --link --neighbour-norm "$norm" --data "$data" \
      --out "$dir" --seed "$seed" --quiet
  fi
done
