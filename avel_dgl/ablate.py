"""The perspective-combination study (Table 3), `avel-dgl ablate`: a grid of network variants x
table columns x seeds (avel_dgl/grid.py), one training run per cell and seed, resumable,
summarised as mean ± std tables (avel_dgl/tables.py).

Every number is the test accuracy of the checkpoint with the best validation accuracy
(`train.train_run`), on O-AVE and on C-AVE.

Layout under the grid folder:
    ablate.json                    the data folder and base config the grid was made with
    <variant>/<column>/seed<k>/    one `train_run` folder per cell and seed
    table.csv                      one row per label set, variant and column (status, seeds, mean, std, values)
    table.md                       Table 3's layout, once per label set

A run folder with a complete results.json is done and is never trained again; one without (an
interrupted run) is resumed from its last.pt, or trained again from scratch if it cannot be. A
resume must use the same data folder and base config (ablate.json); the variants, tasks and seeds
may change.

With jobs > 1 the runs go that many at a time, each in a worker process of its own
(avel_dgl/pool.py: 'spawn'd, pinned to a core of its own where there are enough, one torch
thread) with the grid's runtime.Runtime; a run's results are then those of the same run with
jobs = 1 at one thread. The parent alone writes the tables and stops every worker (SIGTERM: each
keeps a resumable last.pt) when the grid stops.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Callable

from avel_dgl import interrupt, pool
from avel_dgl.outputs import OwnedFolder, check_owned_folder, write_text_atomic
from avel_dgl.config import Config, differences, flatten, replace
from avel_dgl.data.dataset import load_noisy, load_split, test_label_sets
from avel_dgl.errors import AvelError, Interrupted
from avel_dgl.format import SPLITS
from avel_dgl.grid import Cell, cell_config, plan, read_results, seconds_left, variant_summary
from avel_dgl.run_folder import RunFolder
from avel_dgl.runtime import Runtime
from avel_dgl.tables import summarize, write_tables
from avel_dgl.train import resume_run, train_run

MANIFEST = "ablate.json"


def _shared(base: Config) -> Config:
    """The config every cell of a grid shares: the fields a cell sets itself at fixed values."""
    return replace(base, **{"model.variant": "dpnet", "train.task": "sel", "train.replicate": False,
                            "train.link": False, "train.seed": 0})


GRID_FOLDER = OwnedFolder("ablate grid", MANIFEST)


def check_grid_folder(out_dir: Path, data_dir: Path, base: Config, write: bool) -> None:
    """Refuse to mix runs of different settings in one grid folder; record them for a new one."""
    out_dir, data = Path(out_dir), str(Path(data_dir).resolve())
    path = out_dir / MANIFEST
    if check_owned_folder(out_dir, GRID_FOLDER, overwrite=None, write=write):  # a grid continues, never replaced
        try:
            found = json.loads(path.read_text())
            diffs = [(k, theirs, mine) for k, mine, theirs in differences(_shared(base), Config.from_dict(found["config"]))]
            if found["data"] != data:
                diffs.insert(0, ("data", found["data"], data))
        except (OSError, ValueError, KeyError, TypeError):
            raise AvelError(f"{path}: not a readable grid record; choose another --out") from None
        if diffs:
            text = "; ".join(f"{k}: {theirs!r} there, {mine!r} now" for k, theirs, mine in diffs[:3])
            raise AvelError(f"--out: {out_dir} holds a grid made with other settings ({text}); "
                            "choose another --out or the same settings")
        return
    if write:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps({"data": data, "config": _shared(base).to_dict()}, indent=2))


def _pct(acc: float | None) -> str:
    return "skipped" if acc is None else f"{100 * acc:.2f}"  # None: no right_labels.h5 (C-AVE)


def check_data(data_dir: Path, columns: list[str]) -> None:
    """Read every split (and the noisy videos for WSEL) once, so bad data fails before any run."""
    if not Path(data_dir).is_dir():
        raise AvelError(f"--data: {data_dir} is not a folder")
    for split in SPLITS:
        for label_set in test_label_sets(data_dir) if split == "test" else ("o-ave",):
            load_split(data_dir, split, label_set)
    if "wsel" in columns:
        load_noisy(data_dir)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def dry_run(base: Config, data_dir: Path, out_dir: Path, variants: list[str], columns: list[str], seeds: int,
            echo: Callable[[str], None] = print) -> None:
    """Say what the grid would train, with each variant's layers and size; train and write nothing."""
    check_data(data_dir, columns)  # a plan for data that cannot train would mislead
    check_grid_folder(out_dir, data_dir, base, write=False)
    cells = plan(base, out_dir, variants, columns, seeds)
    echo(f"{'variant':20} {'layers':24} {'params':>11}  runs done/planned")
    for variant in variants:
        info = variant_summary(base, variant)
        mine = [c for c in cells if c.variant == variant]
        done = sum(read_results(c.folder) is not None for c in mine)
        echo(f"{variant:20} {info['layers']:24} {info['params']:>11,}  {done}/{len(mine)}")
    done = sum(read_results(c.folder) is not None for c in cells)
    echo(f"grid: {len(cells)} runs, {done} done, {len(cells) - done} to train")


def run_grid(base: Config, data_dir: Path, out_dir: Path, variants: list[str], columns: list[str], seeds: int,
             runtime: Runtime, echo: Callable[[str], None] = print, progress: bool = False,
             jobs: int = 1) -> list[dict]:
    """Train every unfinished run of the grid, `jobs` at a time, each under `runtime`, then write
    the tables. Returns the table rows. Progress bars only with jobs = 1."""
    if not isinstance(jobs, int) or jobs < 1:
        raise AvelError(f"--jobs: expected a positive integer, found {jobs!r}")
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    check_data(data_dir, columns)
    check_grid_folder(out_dir, data_dir, base, write=True)
    cells = plan(base, out_dir, variants, columns, seeds)
    todo = [cell for cell in cells if read_results(cell.folder) is None]
    done_before = [cell for cell in cells if cell not in todo]
    echo(f"grid: {len(cells)} runs ({len(variants)} variants, columns {', '.join(columns)}, {seeds} seeds); "
         f"{len(done_before)} done before, {len(todo)} to train"
         + (f", {min(jobs, len(todo))} at a time" if jobs > 1 and todo else "")
         + (f"; about {_minutes(seconds_left(done_before, todo, jobs))} by the epoch times of the runs done"
            if todo and done_before else ""))
    finished: list[Cell] = []

    def record(cell: Cell, results: dict, elapsed: float) -> None:
        """A run has finished: tables brought up to date, one line with the time left."""
        finished.append(cell)
        write_tables(out_dir, summarize(base, out_dir, variants, seeds))
        rest = [c for c in todo if c not in finished]
        left = seconds_left([c for c in cells if c not in rest], rest, jobs)
        echo(f"[{len(cells) - len(todo) + len(finished)}/{len(cells)}] {cell}: val {100 * results['val_acc']:.2f}, "
             f"o-ave {100 * results['test_acc_o-ave']:.2f}, c-ave {_pct(results['test_acc_c-ave'])} "
             f"({_minutes(elapsed)}); " + (f"about {_minutes(left)} left" if rest else "grid finished"))

    with interrupt.interruptible():  # SIGINT/SIGTERM anywhere in the grid: one line, exit 130/143
        try:
            if jobs == 1:
                for cell in todo:
                    start = time.perf_counter()
                    results = train_cell(cell_config(base, cell.variant, cell.column, cell.seed), data_dir,
                                         cell.folder, runtime, echo, progress)
                    record(cell, results, time.perf_counter() - start)
            elif todo:
                pool.run_in_workers(functools.partial(_train_in_worker, base, data_dir, runtime), todo, jobs, echo,
                                    record, again="run the same avel-dgl ablate command again to continue")
        except Interrupted as e:
            done = sum(read_results(cell.folder) is not None for cell in cells)  # workers may finish one as they stop
            raise interrupt.stopped(e.signum, "ablate", f"{done} of {len(cells)} runs done; run the same "
                                                        f"avel-dgl ablate command again to continue") from None
    rows = summarize(base, out_dir, variants, seeds)
    write_tables(out_dir, rows)
    return rows


def _train_in_worker(base: Config, data_dir: Path, runtime: Runtime, cell: Cell, echo: Callable[[str], None]) -> dict:
    """One run of the grid in a worker process of `pool.run_in_workers`. `runtime`: the grid's,
    resolved once in the parent (a worker is one process of the grid, not a rank of its own)."""
    return train_cell(cell_config(base, cell.variant, cell.column, cell.seed), data_dir, cell.folder, runtime, echo,
                      progress=False)


def train_cell(config: Config, data_dir: Path, folder: Path, runtime: Runtime, echo: Callable[[str], None],
               progress: bool) -> dict:
    """Train one run of the grid. A folder left by an interrupted run is resumed from its last.pt
    (bit for bit, `train.resume_run`), after checking that it was made with this very config;
    one that cannot be resumed is trained again from scratch."""
    if RunFolder(folder).last.is_file():
        try:
            results = resume_run(folder, runtime, data_dir, expect=flatten(config), progress=progress)
            echo(f"resumed the interrupted run in {folder}")
            return results
        except Interrupted:
            raise
        except AvelError as e:
            echo(f"note: cannot resume {folder} ({e}); training it again from scratch")
    return train_run(config, data_dir, folder, runtime, overwrite=True, progress=progress)


