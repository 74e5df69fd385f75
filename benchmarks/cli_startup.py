"""Benchmark: how long the command line takes to start, against importing torch.

    python benchmarks/cli_startup.py              # 5 runs of each, medians
    python benchmarks/cli_startup.py --runs 9 --json

Each measurement is a fresh Python process (this interpreter, the repository on PYTHONPATH):
`avel-dgl --help`, `avel-dgl train --help` (as `python -m cli.main ...`, what the `avel-dgl`
entry point runs), and `python -c "import torch"`; the wall time of each is the median over
--runs, and the table gives each help's time as a fraction of torch's import. Then
`python -X importtime -c "import cli.main"` gives the modules the command line imports before
any command runs, the slowest first (cumulative microseconds, as -X importtime reports them),
and which of torch, DGL, numpy, h5py and pandas among them (none expected: the help needs none).

Run it alone on the machine: other work changes every figure (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
HEAVY = ("torch", "dgl", "numpy", "h5py", "pandas")

COMMANDS = {
    "avel-dgl --help": ["-m", "cli.main", "--help"],
    "avel-dgl train --help": ["-m", "cli.main", "train", "--help"],
    "python -c 'import torch'": ["-c", "import torch"],
}


def wall_time(args: list[str]) -> float:
    """Seconds for one fresh `python ARGS` to finish (its output discarded)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def import_times(top: int) -> tuple[list[tuple[str, int]], list[str]]:
    """The `top` slowest modules `import cli.main` loads (name, cumulative us), and the heavy
    packages among all it loads."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import cli.main"], cwd=ROOT, env=ENV,
                          check=True, capture_output=True, text=True)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line[len("import time:"):].split("|"))
        rows.append((name, int(cumulative)))
    heavy = sorted({name.split(".")[0] for name, _ in rows} & set(HEAVY))
    return sorted(rows, key=lambda r: -r[1])[:top], heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per command (median)")
    parser.add_argument("--top", type=int, default=8, help="modules listed from -X importtime")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    wall_time(COMMANDS["python -c 'import torch'"])  # warm the page cache for every command alike
    medians = {name: statistics.median(wall_time(argv) for _ in range(args.runs)) for name, argv in COMMANDS.items()}
    torch_import = medians["python -c 'import torch'"]
    slowest, heavy = import_times(args.top)
    if args.json:
        print(json.dumps({"runs": args.runs, "median_s": medians,
                          "ratio_to_import_torch": {k: v / torch_import for k, v in medians.items()},
                          "importtime_top_us": slowest, "heavy_imported": heavy}, indent=1))
        return
    print(f"wall time, median of {args.runs} fresh processes ({sys.executable}):")
    for name, seconds in medians.items():
        print(f"  {name:28} {seconds:7.3f} s   {seconds / torch_import:5.2f} x import torch")
    print("python -X importtime -c 'import cli.main', slowest (cumulative):")
    for name, us in slowest:
        print(f"  {name:28} {us / 1000:9.1f} ms")
    print(f"heavy packages imported by the command line: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
