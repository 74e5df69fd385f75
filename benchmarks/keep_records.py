"""Copy the small records of every run folder under SRC (config.json, runtime.json, metrics.csv,
results.json and any results_*.json kept beside it, per_class_*.csv; never the checkpoints) to
the same relative paths under DEST, so the figures in docs/RESULTS.md can be checked against the
runs that made them, and a grid (`avel-dgl ablate`) interrupted by the end of a machine's life
can go on elsewhere: ablate counts a run folder with a complete results.json as done, so copying
DEST's folders back into a grid folder made with the same data and base config skips those runs.

    python benchmarks/keep_records.py /work/exp/runs/ablate docs/runs/ablate-small
    python benchmarks/keep_records.py docs/runs/ablate-small runs/ablate --data data/ave4143   # and back

A grid's ablate.json names its data folder by absolute path, and ablate refuses a grid made on
another folder; `--data` rewrites that path in the copied ablate.json to the folder given (the
same data regenerated elsewhere: `make-synthetic` with the same arguments writes the same files).
`--finished-only` leaves out run folders (those with a config.json) that have no results.json
yet: a grid's interrupted runs, which restart from scratch without their last.pt anyway.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

RECORDS = ("config.json", "runtime.json", "metrics.csv", "results*.json", "per_class_*.csv", "ablate.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dest", type=Path)
    ap.add_argument("--data", type=Path, help="data folder to record in the copied ablate.json files")
    ap.add_argument("--finished-only", action="store_true", help="skip run folders without results.json")
    args = ap.parse_args()
    copied = 0
    for pattern in RECORDS:
        for f in sorted(args.src.rglob(pattern)):
            unfinished_run = (f.parent / "config.json").exists() and not (f.parent / "results.json").exists()
            if args.finished_only and unfinished_run:
                continue
            target = args.dest / f.relative_to(args.src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
            if f.name == "ablate.json" and args.data:
                grid = json.loads(target.read_text())
                grid["data"] = str(args.data.resolve())
                target.write_text(json.dumps(grid, indent=2))
            copied += 1
    print(f"copied {copied} files from {args.src} to {args.dest}")


if __name__ == "__main__":
    main()
