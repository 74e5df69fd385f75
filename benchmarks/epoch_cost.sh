#!/usr/bin/env bash
# Seconds per epoch (training and validation, metrics.csv's `seconds`) of the settings of the
# README's headline table, SEL, measured one after another in one lane on an otherwise idle
# machine (taskset the lane to a core: one torch thread), so that their ratios are comparable.
# docs/RESULTS.md multiplies them by each run's best epoch for its "minutes to best" column.
#
#   taskset -c 1 benchmarks/epoch_cost.sh data/ave4143 /tmp/epoch_cost [EPOCHS]
#
# AVEL (default avel-dgl) is the command to run, e.g. AVEL=".venv/bin/avel-dgl".
set -euo pipefail
data=$1 out=$2 epochs=${3:-2}
avel=${AVEL:-avel-dgl}
settings="dpnet:replicate dpnet:no-replicate bilstm:replicate bilstm:no-replicate"
for setting in $settings; do
  model=${setting%%:*} flag=${setting##*:}
  $avel train --task sel --preset small --variant "$model" --"$flag" --epochs "$epochs" --data "$data" \
    --out "$out/$model-$flag" --overwrite --quiet > /dev/null
done
echo "| setting | seconds per epoch (epochs 1..$epochs) | mean |"
echo "|---|---|---:|"
for setting in $settings; do
  model=${setting%%:*} flag=${setting##*:}
  python3 - "$out/$model-$flag/metrics.csv" "$model --$flag" <<'PY'
import csv, sys
seconds = [float(row["seconds"]) for row in csv.DictReader(open(sys.argv[1]))]
print(f"| {sys.argv[2]} | {' / '.join(f'{s:.2f}' for s in seconds)} | {sum(seconds) / len(seconds):.2f} |")
PY
done
