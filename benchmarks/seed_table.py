"""Mean ± sample std over seeds of run folders laid out as OUT/<setting>/seed<k>, as the markdown
tables of docs/RESULTS.md (the converged DPNet-against-BiLSTM comparison).

    python benchmarks/seed_table.py runs/baseline [--last 5]

Per setting (a subfolder of OUT holding seed<k> run folders): the seeds that finished (a
results.json), the validation-selected best.pt's test accuracy on O-AVE and C-AVE (mean ± sample
std over those seeds), the best validation accuracy and its epoch per seed, the measured wall
minutes up to the best epoch (the `seconds` column of metrics.csv summed: it includes any load
from other processes, so compare rows measured side by side), and the mean validation accuracy
over the last `--last` epochs next to the best, which shows whether the curve had flattened.
A seed still training is listed as unfinished and left out of the means.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from curves import read_rows  # benchmarks/curves.py: a run's metrics.csv rows


def seed_runs(setting: Path) -> list[Path]:
    return sorted((p for p in setting.glob("seed*") if (p / "metrics.csv").is_file()),
                  key=lambda p: int(p.name[len("seed"):]))


def run_summary(run: Path, last: int) -> dict:
    rows = read_rows(run)
    val = [100 * float(r["val_acc"]) for r in rows]
    seconds = [float(r["seconds"]) for r in rows]
    best = max(range(len(val)), key=val.__getitem__)
    out = {"seed": run.name[len("seed"):], "epochs": len(rows), "best_val": val[best], "best_epoch": best + 1,
           "minutes_to_best": sum(seconds[:best + 1]) / 60, "last_val": statistics.mean(val[-last:]),
           "finished": False}
    results = run / "results.json"
    if results.is_file():
        r = json.loads(results.read_text())
        out.update(finished=True, o_ave=100 * r["test_acc_o-ave"], c_ave=100 * r["test_acc_c-ave"])
    return out


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def per_seed(runs: list[dict], template: str) -> str:
    return " / ".join(template.format(**r) for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, help="folder of <setting>/seed<k> run folders")
    ap.add_argument("--last", type=int, default=5, help="epochs at the end whose mean validation accuracy is shown")
    args = ap.parse_args()
    print(f"| setting | seeds finished | test O-AVE | test C-AVE | best val (epoch) per seed | "
          f"minutes to best per seed (measured) | mean val of the last {args.last} epochs per seed |")
    print("|---|---|---|---|---|---|---|")
    for setting in sorted(p for p in args.out.iterdir() if p.is_dir()):
        runs = [run_summary(r, args.last) for r in seed_runs(setting)]
        if not runs:
            continue
        done = [r for r in runs if r["finished"]]
        unfinished = [f"seed {r['seed']} at epoch {r['epochs']}" for r in runs if not r["finished"]]
        seeds = ", ".join(r["seed"] for r in done) or "none"
        if unfinished:
            seeds += f" (unfinished: {', '.join(unfinished)})"
        print(f"| {setting.name} | {seeds} | {mean_std([r['o_ave'] for r in done])} | "
              f"{mean_std([r['c_ave'] for r in done])} | "
              f"{per_seed(runs, '{best_val:.1f} ({best_epoch})')} | {per_seed(runs, '{minutes_to_best:.1f}')} | "
              f"{per_seed(runs, '{last_val:.1f}')} |")


if __name__ == "__main__":
    main()
