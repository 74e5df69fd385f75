"""Table 2 layout (section 4.1): base DPNet, +Replicate, +Replicate+Link, several seeds; mean and
sample standard deviation of the validation-selected test accuracy on O-AVE and C-AVE.

    python benchmarks/table2.py --data DIR --out runs/table2 [--preset small] [--epochs 20] [--seeds 0 1 2]
        [--input-norm none|standardize]

Each (mode, seed) is an ordinary training run (`avel_dgl.train.train_run`) in OUT/<mode>/seed<k>;
the same run from the command line is
    avel-dgl train --task sel --preset small --epochs E --seed k --input-norm N --data DIR \
        --out OUT/<mode>/seed<k> [--no-replicate --no-link | --replicate --no-link | --replicate --link]
A run whose folder already holds results.json for the same config is reused, so an interrupted
study resumes where it stopped. Runs one after another, one thread each (the CPU is shared).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from avel_dgl.config import get_preset, replace
from avel_dgl.runtime import Runtime
from avel_dgl.train import train_run

MODES = {"base": (False, False), "replicate": (True, False), "replicate+link": (True, True)}
LABEL_SETS = ("o-ave", "c-ave")


def run_all(data: Path, out: Path, preset: str, epochs: int, seeds: list[int], input_norm: str) -> dict:
    runtime = Runtime.create()  # --device auto, --kernel auto, as `avel-dgl train`'s defaults
    results = {}
    for mode, (rep, link) in MODES.items():
        for seed in seeds:
            config = replace(get_preset(preset), **{"train.epochs": epochs, "train.seed": seed,
                                                    "train.input_norm": input_norm,
                                                    "train.replicate": rep, "train.link": link})
            run_dir = out / mode / f"seed{seed}"
            done = run_dir / "results.json"
            if done.is_file() and json.loads((run_dir / "config.json").read_text()) == json.loads(
                    json.dumps(config.to_dict())):
                results[mode, seed] = json.loads(done.read_text())
                continue
            print(f"training {mode} seed {seed} -> {run_dir}", flush=True)
            results[mode, seed] = train_run(config, data, run_dir, runtime, overwrite=True, progress=False)
    return results


def table(results: dict, seeds: list[int]) -> str:
    """Markdown rows: mode, then mean ± std (in %) of the test accuracy per label set, and val."""
    lines = ["| DPNet | Replicate | Link | O-AVE SEL acc (%) | C-AVE SEL acc (%) | val acc (%) | best epochs |",
             "|---|---|---|---|---|---|---|"]
    for mode, (rep, link) in MODES.items():
        rows = [results[mode, s] for s in seeds]
        cells = []
        for key in [f"test_acc_{ls}" for ls in LABEL_SETS] + ["val_acc"]:
            values = [100 * r[key] for r in rows]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.2f} ± {spread:.2f}")
        epochs = ", ".join(str(r["best_epoch"]) for r in rows)
        lines.append(f"| ✓ | {'✓' if rep else ''} | {'✓' if link else ''} | {' | '.join(cells)} | {epochs} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--input-norm", choices=["none", "standardize"], default="none")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = run_all(args.data, args.out, args.preset, args.epochs, args.seeds, args.input_norm)
    print(f"{args.preset} preset, {args.epochs} epochs, input norm {args.input_norm}, seeds {args.seeds}, "
          f"data {args.data}")
    print(table(results, args.seeds))
    for mode in ("replicate", "replicate+link"):
        counts = [results[mode, s].get("replicas", {}) for s in args.seeds]
        sub, fb, cp = (sum(c.get(k, 0) for c in counts) for k in ("sub_events", "fallbacks", "copied"))
        print(f"{mode}: {fb}/{sub} sub-events re-split ({100 * fb / max(sub, 1):.1f}%), {cp} pieces copied")


if __name__ == "__main__":
    main()
