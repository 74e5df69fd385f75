"""What Replicate and Link change in each network of a Table 3 grid, paired by seed.

    python benchmarks/table3_pairs.py runs/ablate

For every network of an `avel-dgl ablate` folder (OUT/<variant>/<column>/seed<k>): +Rep. minus
SEL Base and +Link minus +Rep., in test accuracy points of the validation-selected best.pt on
O-AVE and C-AVE, as the mean over the seeds that finished both runs and how many of those seeds
went up. A mean of three numbers hides whether one seed carries it: the count does not. Also each
network's SEL Base and WSEL best epochs (out of the run's epochs), and a second table of every
column's validation accuracy at the end of each learning-rate cycle (mean over seeds): whether
validation was still rising at the end of the budget.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

from avel_dgl.grid import COLUMNS, read_results
from avel_dgl.tables import NETWORKS
from avel_dgl.format import LABEL_SETS

PAIRS = (("+Rep. - Base", "sel", "sel-rep"), ("+Link - +Rep.", "sel-rep", "sel-link"))


def seeds_of(folder: Path) -> dict[int, dict]:
    """seed -> results.json of the finished runs in a column folder."""
    runs = {}
    for run in folder.glob("seed*"):
        results = read_results(run)
        if results is not None:
            runs[int(run.name[len("seed"):])] = results
    return runs


def paired(out: Path, variant: str, before: str, after: str) -> str:
    a, b = seeds_of(out / variant / before), seeds_of(out / variant / after)
    both = sorted(a.keys() & b.keys())
    if not both:
        return "n/a"
    parts = []
    for label_set in LABEL_SETS:
        key = f"test_acc_{label_set}"
        deltas = [100 * (b[s][key] - a[s][key]) for s in both]
        parts.append(f"{statistics.mean(deltas):+.2f} ({sum(d > 0 for d in deltas)}/{len(both)} up)")
    return " / ".join(parts)


def best_epochs(out: Path, variant: str, column: str) -> str:
    runs = seeds_of(out / variant / column)
    if not runs:
        return "n/a"
    epochs = json.loads((out / variant / column / f"seed{min(runs)}" / "config.json").read_text())["train"]["epochs"]
    return ", ".join(str(runs[s]["best_epoch"]) for s in sorted(runs)) + f" of {epochs}"


def validation_at_cycle_ends(out: Path, variant: str, column: str) -> str:
    """Mean validation accuracy (%) over the column's finished seeds at epochs k * cycle_epochs."""
    runs = seeds_of(out / variant / column)
    if not runs:
        return "n/a"
    curves = []
    for seed in sorted(runs):
        folder = out / variant / column / f"seed{seed}"
        train = json.loads((folder / "config.json").read_text())["train"]
        with open(folder / "metrics.csv", newline="") as f:
            val = {int(row["epoch"]): float(row["val_acc"]) for row in csv.DictReader(f)}
        curves.append([val[e] for e in range(train["cycle_epochs"], train["epochs"] + 1, train["cycle_epochs"])])
    return " / ".join(f"{100 * statistics.mean(at):.2f}" for at in zip(*curves))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="an `avel-dgl ablate --out` folder")
    out = parser.parse_args().out
    print("| Network | " + " | ".join(f"{title} (O-AVE / C-AVE)" for title, *_ in PAIRS)
          + " | SEL Base best epochs | WSEL best epochs |")
    print("|---|" + "---|" * (len(PAIRS) + 2))
    for variant, (network, _) in NETWORKS.items():
        if not (out / variant).is_dir():
            continue
        cells = [paired(out, variant, before, after) for _, before, after in PAIRS]
        cells += [best_epochs(out, variant, "sel"), best_epochs(out, variant, "wsel")]
        print(f"| {network} | " + " | ".join(cells) + " |")
    print("\nValidation accuracy (%) at the end of each learning-rate cycle, mean over finished seeds\n")
    print("| Network | " + " | ".join(c.title for c in COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    for variant, (network, _) in NETWORKS.items():
        if (out / variant).is_dir():
            print(f"| {network} | " + " | ".join(validation_at_cycle_ends(out, variant, c.name) for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
