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

With jobs > 1 the runs go that many at a time, each in a worker process of its own ('spawn'd, so
no torch or DGL thread pool is inherited half-initialised through fork), pinned to a core of its
own where there are enough (`runtime.pin_worker`), with one torch thread and the grid's
runtime.Runtime; a run's results are then those of the same run with jobs = 1 at one thread. The
parent alone writes the tables and stops every worker (SIGTERM: each keeps a resumable last.pt)
when the grid stops.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing as mp
import multiprocessing.connection
import signal
import time
import traceback
from pathlib import Path
from typing import Callable

from avel_dgl import interrupt
from avel_dgl.outputs import write_text_atomic
from avel_dgl.config import Config, differences, flatten, replace
from avel_dgl.data.dataset import load_noisy, load_split, test_label_sets
from avel_dgl.errors import AvelError, Interrupted
from avel_dgl.format import SPLITS
from avel_dgl.grid import Cell, cell_config, column, plan, read_results, seconds_left, variant_summary
from avel_dgl.runtime import Runtime, pin_worker, worker_cores
from avel_dgl.tables import summarize, write_tables
from avel_dgl.train import resume_run, train_run

MANIFEST = "ablate.json"


def replicate_available() -> bool:
    """Whether this build can train with replicas (the sub-event sampler module is present)."""
    return importlib.util.find_spec("avel_dgl.data.subevents") is not None


def _shared(base: Config) -> Config:
    """The config every cell of a grid shares: the fields a cell sets itself at fixed values."""
    return replace(base, **{"model.variant": "dpnet", "train.task": "sel", "train.replicate": False,
                            "train.link": False, "train.seed": 0})


def check_grid_folder(out_dir: Path, data_dir: Path, base: Config, write: bool) -> None:
    """Refuse to mix runs of different settings in one grid folder; record them for a new one."""
    out_dir, data = Path(out_dir), str(Path(data_dir).resolve())
    path = out_dir / MANIFEST
    if path.is_file():
        try:
            found = json.loads(path.read_text())
            diffs = [(k, theirs, mine) for k, mine, theirs in differences(_shared(base), Config.from_dict(found["config"]))]
            if found["data"] != data:
                diffs.insert(0, ("data", found["data"], data))
        except (ValueError, KeyError, TypeError):
            raise AvelError(f"{path}: not a readable grid record; choose another --out") from None
        if diffs:
            text = "; ".join(f"{k}: {theirs!r} there, {mine!r} now" for k, theirs, mine in diffs[:3])
            raise AvelError(f"--out: {out_dir} holds a grid made with other settings ({text}); "
                            "choose another --out or the same settings")
        return
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise AvelError(f"--out: {out_dir} exists and holds no {MANIFEST}; choose a new or empty folder")
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


def _trainable(columns: list[str], echo: Callable[[str], None]) -> list[str]:
    if any(column(c).replicate for c in columns) and not replicate_available():
        echo("note: this build cannot train with replicas (avel_dgl.data.subevents is missing); "
             "the +Rep. and +Link cells stay 'not run'")
        return [c for c in columns if not column(c).replicate]
    return columns


def dry_run(base: Config, data_dir: Path, out_dir: Path, variants: list[str], columns: list[str], seeds: int,
            echo: Callable[[str], None] = print) -> None:
    """Say what the grid would train, with each variant's layers and size; train and write nothing."""
    columns = _trainable(columns, echo)
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
    columns = _trainable(columns, echo)
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
        echo(f"[{len(cells) - len(todo) + len(finished)}/{len(cells)}] {cell.variant} {cell.column} "
             f"seed {cell.seed}: val {100 * results['val_acc']:.2f}, o-ave {100 * results['test_acc_o-ave']:.2f}, "
             f"c-ave {_pct(results['test_acc_c-ave'])} ({_minutes(elapsed)}); "
             + (f"about {_minutes(left)} left" if rest else "grid finished"))

    with interrupt.interruptible():  # SIGINT/SIGTERM anywhere in the grid: one line, exit 130/143
        try:
            if jobs == 1:
                for cell in todo:
                    start = time.perf_counter()
                    results = train_cell(cell_config(base, cell.variant, cell.column, cell.seed), data_dir,
                                         cell.folder, runtime, echo, progress)
                    record(cell, results, time.perf_counter() - start)
            elif todo:
                _train_in_workers(base, data_dir, todo, jobs, runtime, echo, record)
        except Interrupted as e:
            done = sum(read_results(cell.folder) is not None for cell in cells)  # workers may finish one as they stop
            raise Interrupted(e.signum, f"{signal.Signals(e.signum).name}: grid stopped with {done} of "
                                        f"{len(cells)} runs done; run the same avel-dgl ablate command again "
                                        f"to continue") from None
    rows = summarize(base, out_dir, variants, seeds)
    write_tables(out_dir, rows)
    return rows


def _train_in_workers(base: Config, data_dir: Path, todo: list[Cell], jobs: int, runtime: Runtime,
                      echo: Callable[[str], None], record: Callable[[Cell, dict, float], None]) -> None:
    """Train `todo` in min(jobs, runs) worker processes, handing each the next run as it finishes
    one. Each worker talks over a pipe of its own: no lock shared between processes, which one
    killed while holding it would leave taken. Whatever stops the grid (a signal, a failed run,
    a dead worker) stops every worker first with SIGTERM, which one in a run answers as
    `train_run` does, with a resumable last.pt."""
    ctx = mp.get_context("spawn")
    cores = worker_cores(min(jobs, len(todo)))
    pending = list(todo)
    workers = {}  # connection -> process
    try:
        for core in cores:
            mine, theirs = ctx.Pipe()
            worker = ctx.Process(target=_worker, args=(core, len(cores), base, data_dir, theirs, runtime),
                                 daemon=True)
            worker.start()
            theirs.close()
            workers[mine] = worker
            mine.send(pending.pop(0))
        left = len(todo)
        while left:
            for conn in mp.connection.wait(list(workers), timeout=1.0):
                try:
                    kind, cell, *rest = conn.recv()
                except EOFError:  # the worker has exited: its exit code says why
                    _worker_gone(workers.pop(conn))
                    continue
                if kind == "echo":
                    echo(rest[0])
                elif kind == "done":
                    left -= 1
                    conn.send(pending.pop(0) if pending else None)  # None: nothing left, exit
                    record(cell, *rest)
                elif kind == "error":
                    raise AvelError(rest[0])
                else:
                    raise RuntimeError(f"{cell.variant} {cell.column} seed {cell.seed}: a worker failed "
                                       f"(its traceback is above)")
    finally:
        stop_workers(list(workers.values()))


def stop_workers(workers: list, grace: float = 60.0) -> None:
    """SIGTERM to every live worker, then wait for all of them; one still alive after `grace`
    seconds is killed outright, so that the grid always stops (a run stopped mid-epoch that way
    resumes from its last.pt like any other). Seen once on a loaded machine: a worker waiting
    for its next run outlived SIGTERM and the grid waited for it forever."""
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    deadline = time.monotonic() + grace
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.kill()
            worker.join()


def _worker_gone(worker) -> None:
    """A worker has exited. With 0 it had been told there was nothing left; by a signal of its own
    in a run (exit 128 + signal, as `_worker` leaves) the grid stops as if it had the signal;
    anything else is a fault."""
    worker.join()
    if worker.exitcode == 0:
        return
    if worker.exitcode in (128 + signal.SIGINT, 128 + signal.SIGTERM):  # stopped in a run
        raise Interrupted(worker.exitcode - 128)
    if worker.exitcode in (-signal.SIGINT, -signal.SIGTERM):  # by the signal's default action, between runs
        raise Interrupted(-worker.exitcode)
    raise AvelError(f"--jobs: a worker process died (exit code {worker.exitcode}); finished runs are kept, "
                    f"run the same avel-dgl ablate command again to continue")


def _worker(core: int | None, processes: int, base: Config, data_dir: Path, conn, runtime: Runtime) -> None:
    """A worker process of `_train_in_workers`: trains the runs it receives until a None, sending
    (kind, cell, ...) back. A run stopped by a signal ends the process with exit code 128 + signal.
    `runtime`: the grid's, resolved once in the parent (a worker is one process of the grid, not a
    rank of its own)."""
    # Outside a run the parent alone decides when the grid stops (a terminal's Ctrl-C reaches every
    # process); inside one, train_run's own handlers stop it cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pin_worker(core, processes)
    while True:
        # Between runs SIGTERM is the default, a plain exit (a run's handlers may not all be undone
        # when a signal came as train_run was restoring them).
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if (cell := conn.recv()) is None:
            break
        start = time.perf_counter()
        try:
            results = train_cell(cell_config(base, cell.variant, cell.column, cell.seed), data_dir, cell.folder,
                                 runtime, lambda line, cell=cell: conn.send(("echo", cell, line)), progress=False)
        except Interrupted as e:
            raise SystemExit(e.exit_code) from None
        except AvelError as e:
            conn.send(("error", cell, str(e)))
            return
        except Exception:
            traceback.print_exc()
            conn.send(("crash", cell))
            return
        conn.send(("done", cell, results, time.perf_counter() - start))


def train_cell(config: Config, data_dir: Path, folder: Path, runtime: Runtime, echo: Callable[[str], None],
               progress: bool) -> dict:
    """Train one run of the grid. A folder left by an interrupted run is resumed from its last.pt
    (bit for bit, `train.resume_run`), after checking that it was made with this very config;
    one that cannot be resumed is trained again from scratch."""
    if (folder / "last.pt").is_file():
        try:
            results = resume_run(folder, runtime, data_dir, expect=flatten(config), progress=progress)
            echo(f"resumed the interrupted run in {folder}")
            return results
        except Interrupted:
            raise
        except AvelError as e:
            echo(f"note: cannot resume {folder} ({e}); training it again from scratch")
    return train_run(config, data_dir, folder, runtime, overwrite=True, progress=progress)


