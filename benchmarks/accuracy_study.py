"""Accuracy study: DPNet's training choices against the BiLSTM baseline, over several seeds.

Each named setting is a set of config overrides on a preset; every (setting, seed) is one
ordinary `train_run` (validation-selected checkpoint, tested on O-AVE and C-AVE). Runs whose
results.json exists are skipped, so an interrupted study resumes. Runs go `--jobs` at a time in
the worker pool of `ablate --jobs` (avel_dgl/pool.py): each pinned to its own core where there are
enough, with one torch thread (more threads than cores is many times slower).

    python benchmarks/accuracy_study.py --data DIR --out DIR --settings all --seeds 0,1,2 --epochs 12

Writes DIR/study.md and DIR/study.csv: per setting, mean ± std over seeds of the validation
accuracy, the test accuracy on O-AVE and C-AVE, and the best epoch.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
from pathlib import Path

import pandas as pd

# Every setting spells out each studied field, starting from the paper's structure with nothing
# added, so the table does not move when a preset's defaults change. The baseline comes first;
# each later DPNet setting adds one choice beyond the paper so its effect can be read off the table.
PAPER_STRUCTURE = {"train.input_norm": "none", "model.input_dropout": 0.0, "model.classifier_dropout": 0.0,
                   "model.norm": "none", "model.residual": False, "train.replicate": False, "train.link": False}
STD = {**PAPER_STRUCTURE, "train.input_norm": "standardize"}
DROP = {**STD, "model.input_dropout": 0.5, "model.classifier_dropout": 0.5}
LN = {**DROP, "model.norm": "layer"}
SETTINGS = {
    "bilstm+std+drop": {**DROP, "model.variant": "bilstm"},
    "dpnet": PAPER_STRUCTURE,
    "dpnet+std": STD,
    "dpnet+std+drop": DROP,
    "dpnet+std+drop+ln": LN,
    "dpnet+std+drop+ln+res": {**LN, "model.residual": True},
    "dpnet+std+drop+ln+res+rep+link": {**LN, "model.residual": True, "train.replicate": True, "train.link": True},
    "dpnet+std+drop+ln+rep+link": {**LN, "train.replicate": True, "train.link": True},
    "dpnet+std+drop+ln+adamw-wd": {**LN, "train.optimizer": "adamw", "train.weight_decay": 0.05},
    "dpnet+std+drop+ln+constant-lr": {**LN, "train.lr_floors": ((0, 1.0),)},
}


def run_one(preset: str, epochs: int, data_dir: str, out_dir: Path, job: tuple[str, int], echo) -> str:
    """One (setting, seed) run, in a worker of the pool."""
    name, seed = job
    overrides = SETTINGS[name]
    from avel_dgl.config import get_preset, replace
    from avel_dgl.runtime import Runtime
    from avel_dgl.train import train_run

    config = replace(get_preset(preset), **overrides, **{"train.seed": seed, "train.epochs": epochs})
    folder = Path(out_dir) / name / f"seed{seed}"
    train_run(config, data_dir, folder, Runtime.create(), overwrite=True, progress=False)
    return f"{name} seed {seed} done"


def summarize(out_dir: Path, names: list[str], seeds: list[int]) -> pd.DataFrame:
    rows = []
    for name in names:
        results = [json.loads(p.read_text()) for s in seeds
                   if (p := out_dir / name / f"seed{s}" / "results.json").is_file()]
        if not results:
            continue
        row = {"setting": name, "seeds": len(results)}
        for key in ("val_acc", "test_acc_o-ave", "test_acc_c-ave", "best_epoch"):
            values = [r[key] for r in results]
            row[key] = statistics.mean(values)
            row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    lines = ["| setting | seeds | val acc | test acc O-AVE | test acc C-AVE | best epoch |", "|---|---|---|---|---|---|"]
    pct = lambda r, k: f"{100 * r[k]:.2f} ± {100 * r[k + '_std']:.2f}"
    for _, r in table.iterrows():
        lines.append(f"| {r['setting']} | {r['seeds']} | {pct(r, 'val_acc')} | {pct(r, 'test_acc_o-ave')} | "
                     f"{pct(r, 'test_acc_c-ave')} | {r['best_epoch']:.1f} ± {r['best_epoch_std']:.1f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--settings", default="all", help="'all' or a comma list of: " + ", ".join(SETTINGS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    names = list(SETTINGS) if args.settings == "all" else args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"--settings: unknown {unknown}; expected names from {list(SETTINGS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    todo = [(n, s) for s in seeds for n in names
            if not (args.out / n / f"seed{s}" / "results.json").is_file()]
    print(f"{len(todo)} runs to do, {args.jobs} at a time")
    from avel_dgl.pool import run_in_workers

    run_in_workers(functools.partial(run_one, args.preset, args.epochs, args.data, args.out), todo, args.jobs,
                   echo=print, done=lambda job, message, seconds: print(message, flush=True),
                   again="run the same command again to continue")
    table = summarize(args.out, names, seeds)
    table.to_csv(args.out / "study.csv", index=False)
    (args.out / "study.md").write_text(markdown(table))
    print(markdown(table))


if __name__ == "__main__":
    main()
