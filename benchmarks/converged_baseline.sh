#!/usr/bin/env bash
# DPNet (the `small` preset as shipped) against the BiLSTM baseline (`small` with --variant
# bilstm: the same regularisation, schedule and 30 epochs), SEL and WSEL, one run after another
# in one lane (taskset the lane to a core: one torch thread), each with its validation-selected
# best.pt tested on O-AVE and C-AVE (docs/RESULTS.md). A finished run is skipped and an
# interrupted one resumed, so rerunning the lane continues it.
#
#   benchmarks/converged_baseline.sh DATA OUT "MODEL:TASK:SEED ..."
#   taskset -c 1 benchmarks/converged_baseline.sh data/ave4143 runs/baseline "dpnet:sel:0 bilstm:sel:0"
#
# AVEL (default avel-dgl) is the command to run, e.g. AVEL=".venv/bin/avel-dgl".
set -euo pipefail
data=$1 out=$2 jobs=$3
avel=${AVEL:-avel-dgl}
for job in $jobs; do
  IFS=: read -r model task seed <<< "$job"
  dir=$out/$model-$task/seed$seed
  if [ -f "$dir/results.json" ]; then
    continue
  fi
  if [ -f "$dir/last.pt" ]; then
    $avel train --resume "$dir" --quiet
  else
    $avel train --task "$task" --variant "$model" --preset small --data "$data" --out "$dir" --seed "$seed" --quiet
  fi
done
