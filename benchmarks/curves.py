"""Validation curves of finished or running run folders, as the markdown tables of docs/RESULTS.md.

    python benchmarks/curves.py RUN_DIR [RUN_DIR ...] [--epochs 1 2 3 5 8 10 15 20 25 30]

Per run: epochs done, validation accuracy at the listed epochs, the best validation accuracy and
its epoch, the measured minutes up to that epoch (the `seconds` column of metrics.csv, summed:
it includes any load from other processes), and the test accuracy of best.pt on O-AVE and C-AVE
when the run has finished (results.json). A run's label is its folder relative to the common
parent of all the folders given.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path


def read_rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def summary(run: Path, epochs: list[int]) -> dict:
    rows = read_rows(run)
    val = [float(r["val_acc"]) * 100 for r in rows]
    seconds = [float(r["seconds"]) for r in rows]
    best = max(range(len(val)), key=lambda i: val[i]) if val else -1
    out = {"done": len(rows),
           "curve": " / ".join(f"{val[e - 1]:.1f}" if e <= len(val) else "-" for e in epochs),
           "best": f"{val[best]:.1f} ({best + 1})" if val else "-",
           "minutes": f"{sum(seconds[:best + 1]) / 60:.0f}" if val else "-",
           "test": "not finished"}
    results = run / "results.json"
    if results.is_file():
        r = json.loads(results.read_text())
        out["test"] = f"{100 * r['test_acc_o-ave']:.2f} / {100 * r['test_acc_c-ave']:.2f}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--epochs", nargs="+", type=int, default=[1, 2, 3, 5, 8, 10, 15, 20, 25, 30])
    args = ap.parse_args()
    parent = Path(os.path.commonpath([r.resolve() for r in args.runs])) if len(args.runs) > 1 else args.runs[0].parent
    print(f"| run | epochs done | val acc at epochs {', '.join(map(str, args.epochs))} | best val (epoch) | "
          f"minutes to best (measured) | test O-AVE / C-AVE of best.pt |")
    print("|---|---:|---|---|---:|---|")
    for run in args.runs:
        s = summary(run, args.epochs)
        print(f"| {run.resolve().relative_to(parent)} | {s['done']} | {s['curve']} | {s['best']} | {s['minutes']} | "
              f"{s['test']} |")


if __name__ == "__main__":
    main()
