#!/usr/bin/env bash
# DPNet (the `small` preset as shipped) against the BiLSTM baseline (`small` with --variant
# bilstm: the same regularisation, schedule, Replicate default and 30 epochs), SEL and WSEL, one
# run after another
# in one lane (taskset the lane to a core: one torch thread), each with its validation-selected
# best.pt tested on O-AVE and C-AVE (docs/RESULTS.md). A finished run is skipped and an
# interrupted one resumed, so rerunning the lane continues it.
#
#   benchmarks/converged_baseline.sh DATA OUT "MODEL:TASK:SEED[:FLAG] ..."
#   taskset -c 1 benchmarks/converged_baseline.sh data/ave4143 runs/baseline "dpnet:sel:0 bilstm:sel:0:no-replicate"
#
# FLAG, if given, is passed as --FLAG and names the run folder MODEL-TASK-FLAG (e.g. no-replicate:
# `small` replicates SEL videos by default). EPOCHS, if set, is the runs' --epochs.
#
# AVEL (default avel-dgl) is the command to run, e.g. AVEL=".venv/bin/avel-dgl".
set -euo pipefail
data=$1 out=$2 jobs=$3
avel=${AVEL:-avel-dgl}
for job in $jobs; do
  IFS=: read -r model task seed flag <<< "$job"
  dir=$out/$model-$task${flag:+-$flag}/seed$seed
  if [ -f "$dir/results.json" ]; then
    continue
  fi
  if [ -f "$dir/last.pt" ]; then
    $avel train --resume "$dir" --quiet
  else
    $avel train --task "$task" --variant "$model" --preset small --data "$data" --out "$dir" --seed "$seed" \
      ${flag:+--$flag} ${EPOCHS:+--epochs $EPOCHS} --quiet
  fi
done
