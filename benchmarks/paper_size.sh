#!/usr/bin/env bash
# Paper-size runs against `small` (docs/RESULTS.md, "Paper size"): one lane of runs, one after
# another, each one torch thread (taskset the lane to a core). Resumable: a run folder that has a
# last.pt is continued up to EPOCHS (`train --resume --epochs`), so rerunning with a larger EPOCHS
# extends every run, and an interrupted lane picks up where it stopped.
#
#   benchmarks/paper_size.sh DATA OUT EPOCHS "SETTING:SEED ..."
#   taskset -c 0 benchmarks/paper_size.sh data/ave4143 runs/paper_size 1 "paper:0 paper:1 paper:2"
#
# Settings (SEL): paper = the `paper` preset without Replicate and Link; paper-rl = with them (the
# preset as shipped); paper-reg = the paper's size (width 768, 4 blocks, batch 48, Adam 1e-4,
# schedule) with the `small` preset's dropout and LayerNorm (and `paper`'s swish initialisation);
# paper-reg-torch-init = the same with PyTorch's initialisation, as `small` has it; paper-lr3e-4
# and paper-reg-lr3e-4 = at Adam 3e-4 instead of 1e-4; paper-torch-init = `paper` with PyTorch's
# initialisation (as before nn/init.py); small = the `small` preset without Replicate (as it was
# before issue 27 made Replicate its SEL default); small-swish-init = `small`
# with the swish initialisation; small-w768 = `small` at the paper's width and depth (its learning
# rate scaled to the width by `avel-dgl train`); large = the `large` preset (paper-reg-torch-init
# field for field, shipped under that name).
# AVEL (default avel-dgl) is the command to run, e.g. AVEL=".venv/bin/avel-dgl".
set -euo pipefail
data=$1 out=$2 epochs=$3 jobs=$4
avel=${AVEL:-avel-dgl}
for job in $jobs; do
  setting=${job%%:*} seed=${job##*:}
  case $setting in
    paper) opts=(--preset paper --no-replicate --no-link) ;;
    paper-rl) opts=(--preset paper) ;;
    paper-reg) opts=(--preset paper --no-replicate --no-link --input-dropout 0.5 --classifier-dropout 0.5 --norm layer) ;;
    paper-lr3e-4) opts=(--preset paper --no-replicate --no-link --lr 3e-4) ;;
    paper-torch-init) opts=(--preset paper --no-replicate --no-link --init torch) ;;
    paper-reg-lr3e-4) opts=(--preset paper --no-replicate --no-link --input-dropout 0.5 --classifier-dropout 0.5 --norm layer --lr 3e-4) ;;
    paper-reg-torch-init) opts=(--preset paper --no-replicate --no-link --input-dropout 0.5 --classifier-dropout 0.5 --norm layer --init torch) ;;
    large) opts=(--preset large) ;;
    # `small` before issue 27 (Replicate became its SEL default): the runs behind docs/RESULTS.md
    small) opts=(--preset small --no-replicate) ;;
    small-swish-init) opts=(--preset small --no-replicate --init swish) ;;
    small-w768) opts=(--preset small --no-replicate --width 768 --blocks 4) ;;
    *) echo "paper_size.sh: unknown setting '$setting' (see the list at the top)" >&2; exit 2 ;;
  esac
  dir=$out/$setting/seed$seed
  if [ -f "$dir/results.json" ] && [ $(($(wc -l < "$dir/metrics.csv") - 1)) -ge "$epochs" ]; then
    continue  # finished with at least EPOCHS epochs
  fi
  if [ -f "$dir/last.pt" ]; then
    $avel train --resume "$dir" --epochs "$epochs" --quiet
  else
    $avel train --task sel --data "$data" --out "$dir" --epochs "$epochs" --seed "$seed" --quiet "${opts[@]}"
  fi
done
