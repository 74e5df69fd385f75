"""Why the single-perspective variants stop at the DPNet's depth: trains TCN-only and RGAT-only at
the depth that matches the DPNet's parameter count exactly and at the capped depth the `tcn` and
`rgat` variants use (`nn.variants.matched_depth`), and prints their accuracies. Figures in
docs/RESULTS.md.

    python scripts/depth_check.py --data DIR --out DIR [--preset small] [--epochs 15] [--seed 0]
                                  [--input-norm none|standardize] [--input-dropout P]
                                  [--classifier-dropout P] [--norm none|layer]

Options left out keep the preset's values.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch

from avel_dgl.config import get_preset, replace
from avel_dgl.nn import dpnet, variants
from avel_dgl.runtime import Runtime
from avel_dgl.train import train_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--input-norm", choices=["none", "standardize"])
    parser.add_argument("--input-dropout", type=float)
    parser.add_argument("--classifier-dropout", type=float)
    parser.add_argument("--norm", choices=["none", "layer"])
    args = parser.parse_args()
    runtime = Runtime.for_process()  # as the CLI: all cores this process may use
    options = {"train.input_norm": args.input_norm, "model.input_dropout": args.input_dropout,
               "model.classifier_dropout": args.classifier_dropout, "model.norm": args.norm}
    # Without Replicate, as `small` was when this study ran (issue 27 made it small's SEL default).
    base = replace(get_preset(args.preset), **{"train.epochs": args.epochs, "train.seed": args.seed,
                                               "train.replicate": False,
                                               **{k: v for k, v in options.items() if v is not None}})
    print("network   depth  params      best val  test o-ave  train loss first -> last epoch")
    for name, make in (("tcn", variants.tcn_layer), ("rgat", variants.rgat_layer)):
        for label, max_depth in (("matched", None), ("capped", 2 * base.model.blocks)):
            variant = f"{name}-{label}"
            depth = variants.matched_depth(base.model, make, max_depth)
            # A registry entry for this script only: the same layers at a given depth.
            dpnet.VARIANTS[variant] = (lambda m, kernel, make=make, depth=depth:
                                       variants.sequence(m, [make] * depth, kernel))
            config = replace(base, **{"model.variant": variant})
            with torch.device("meta"):
                params = sum(p.numel() for p in dpnet.build(config, variants.INSPECTION_KERNEL).parameters())
            results = train_run(config, args.data, args.out / variant, runtime, overwrite=True, progress=False)
            with open(args.out / variant / "metrics.csv", newline="") as f:
                losses = [float(row["train_loss"]) for row in csv.DictReader(f)]
            print(f"{name:8}  {depth:5}  {params:>10,}  {100 * results['val_acc']:8.2f}  "
                  f"{100 * results['test_acc_o-ave']:10.2f}  {losses[0]:.3f} -> {losses[-1]:.3f}", flush=True)


if __name__ == "__main__":
    main()
