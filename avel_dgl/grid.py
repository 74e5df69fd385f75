"""The Table 3 grid: its columns and variants, the cells (variant x column x seed) a grid plans,
each cell's run folder and config, and what a finished run's records say (its results, its
training time). `ablate` trains the cells; `tables` summarises their results.

Columns are Table 3's: WSEL, SEL Base, SEL + Rep. (replicas in training), SEL + Link (replicas
joined to their originals by link edges). A cell's run is an ordinary `train.train_run` folder,
<grid>/<variant>/<column>/seed<k>/, done when its results.json is complete.
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

from avel_dgl.config import Config, replace
from avel_dgl.errors import AvelError
from avel_dgl.format import LABEL_SETS
from avel_dgl.nn.dpnet import VARIANTS, build, perspective_layers, uses_graph
from avel_dgl.nn.variants import INSPECTION_KERNEL, layer_kind
from avel_dgl.run_folder import RunFolder

RESULT_KEYS = ("seed", "best_epoch", "val_acc", *(f"test_acc_{s}" for s in LABEL_SETS))


@dataclass(frozen=True)
class Column:
    name: str  # folder name
    title: str  # Table 3 header
    task: str
    replicate: bool
    link: bool


COLUMNS = (
    Column("wsel", "WSEL", "wsel", False, False),
    Column("sel", "SEL Base", "sel", False, False),
    Column("sel-rep", "+Rep.", "sel", True, False),
    Column("sel-link", "+Link", "sel", True, True),
)
TASKS = {"wsel": ("wsel",), "sel": ("sel", "sel-rep", "sel-link")}  # --tasks value -> its columns


def parse_variants(text: str) -> list[str]:
    """'all' or a comma list of variant names -> names in Table 3's row order."""
    if text.strip() == "all":
        return list(VARIANTS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise AvelError(f"--variants: expected 'all' or a comma list of {', '.join(VARIANTS)}, "
                        f"found '{text}'")
    return [v for v in VARIANTS if v in names]


def parse_tasks(text: str) -> list[str]:
    """A comma list of sel and wsel -> the names of the columns to run, in table order."""
    tasks = [t.strip() for t in text.split(",") if t.strip()]
    if not tasks or any(t not in TASKS for t in tasks):
        raise AvelError(f"--tasks: expected a comma list of sel, wsel, found '{text}'")
    wanted = {c for t in tasks for c in TASKS[t]}
    return [c.name for c in COLUMNS if c.name in wanted]


def column(name: str) -> Column:
    return next(c for c in COLUMNS if c.name == name)


def cell_config(base: Config, variant: str, column_name: str, seed: int) -> Config:
    c = column(column_name)
    return replace(base, **{"model.variant": variant, "train.task": c.task, "train.replicate": c.replicate,
                            "train.link": c.link, "train.seed": seed})


def applicable(base: Config, variant: str, column_name: str) -> bool:
    """Link joins graphs: for a network without a graph layer (TCN only) the cell is N/A."""
    return not column(column_name).link or uses_graph(replace(base, **{"model.variant": variant}).model)


def run_dir(out_dir: Path, variant: str, column_name: str, seed: int) -> Path:
    return Path(out_dir) / variant / column_name / f"seed{seed}"


def read_results(folder: Path) -> dict | None:
    """The run's results.json, or None when the run is unfinished (missing or incomplete file)."""
    try:
        results = json.loads(RunFolder(folder).results.read_text())
    except (OSError, ValueError):
        return None
    return results if isinstance(results, dict) and all(k in results for k in RESULT_KEYS) else None


def describe(layers: list) -> str:
    """'RGCT -> TCN x2' style summary of a layer list: a repeated period, else runs of kinds."""
    kinds = [layer_kind(layer) for layer in layers]
    for period in (1, 2):
        repeats = len(kinds) // period
        if repeats > 1 and kinds == kinds[:period] * repeats:
            return f"({' -> '.join(kinds[:period])}) x{repeats}" if period > 1 else f"{kinds[0]} x{repeats}"
    runs: list[list] = []
    for kind in kinds:
        if runs and runs[-1][0] == kind:
            runs[-1][1] += 1
        else:
            runs.append([kind, 1])
    return " -> ".join(kind if n == 1 else f"{kind} x{n}" for kind, n in runs)


def variant_summary(base: Config, variant: str) -> dict:
    """Layers and parameter count of a variant under the base config (built on the meta device)."""
    config = replace(base, **{"model.variant": variant})
    with torch.device("meta"):
        model = build(config, INSPECTION_KERNEL)
    return {"layers": describe(perspective_layers(model)), "params": sum(p.numel() for p in model.parameters())}


@dataclass
class Cell:
    variant: str
    column: str
    seed: int
    folder: Path

    def __str__(self) -> str:  # how messages name a run of the grid
        return f"{self.variant} {self.column} seed {self.seed}"


def plan(base: Config, out_dir: Path, variants: list[str], columns: list[str], seeds: int) -> list[Cell]:
    """The runs of the grid, seed-major (a stopped grid has whole tables for its first seeds)."""
    return [Cell(v, c, s, run_dir(out_dir, v, c, s)) for s in range(seeds) for v in variants for c in columns
            if applicable(base, v, c)]


def training_seconds(folder: Path) -> float | None:
    """Seconds a run spent in its epochs: metrics.csv's per-epoch seconds, summed. Unlike the wall
    time of the last attempt, this is the whole run's cost even when it was resumed."""
    try:
        with open(RunFolder(folder).metrics, newline="") as f:
            return sum(float(row["seconds"]) for row in csv.DictReader(f))
    except (OSError, KeyError, TypeError, ValueError):
        return None


def seconds_left(done: list[Cell], rest: list[Cell], jobs: int) -> float:
    """Training time left in the grid, spread over `jobs` processes (or as many as there are runs
    left): each run in `rest` costs the mean `training_seconds` of the runs in `done` with its
    variant and column, else with its column (a replica run costs 1.5-2x a plain one), else of
    them all."""
    measured = [(c, s) for c in done if (s := training_seconds(c.folder)) is not None]

    def cost(cell: Cell) -> float:
        for alike in (lambda c: (c.variant, c.column) == (cell.variant, cell.column),
                      lambda c: c.column == cell.column, lambda c: True):
            if values := [s for c, s in measured if alike(c)]:
                return statistics.mean(values)
        return 0.0

    return sum(cost(cell) for cell in rest) / max(1, min(jobs, len(rest)))
