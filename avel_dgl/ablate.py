"""The perspective-combination study (Table 3): a grid of network variants x table columns x
seeds, one training run per cell and seed, resumable, summarised as mean ± std tables.

Columns are Table 3's: WSEL, SEL Base, SEL + Rep. (replicas in training), SEL + Link (replicas
joined to their originals by link edges). Every number is the test accuracy of the checkpoint
with the best validation accuracy (`train.train_run`), on O-AVE and on C-AVE.

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

import csv
import importlib.util
import io
import json
import multiprocessing as mp
import multiprocessing.connection
import signal
import statistics
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from avel_dgl import interrupt
from avel_dgl.outputs import OwnedFolder, check_owned_folder, write_text_atomic
from avel_dgl.config import Config, differences, flatten, replace
from avel_dgl.data.dataset import load_noisy, load_split, test_label_sets
from avel_dgl.errors import AvelError, Interrupted
from avel_dgl.format import LABEL_SETS, SPLITS
from avel_dgl.nn.dpnet import VARIANTS, build, perspective_layers, uses_graph
from avel_dgl.nn.variants import layer_kind
from avel_dgl.runtime import Runtime, pin_worker, worker_cores
from avel_dgl.train import resume_run, train_run

MANIFEST = "ablate.json"
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

# Table 3's row labels for each variant (rows follow VARIANTS' order).
NETWORKS = {
    "rgat": ("RGAT only", "One perspective"),
    "rgct": ("RGCT only", "One perspective"),
    "tcn": ("TCN only", "One perspective"),
    "tcn-rgct": ("TCN -> RGCT", "Two perspectives"),
    "rgct-tcn": ("RGCT -> TCN", "Two perspectives"),
    "dpnet-parallel": ("DPNet w/ PPBlock", "Block-wise two perspectives"),
    "dpnet-graph-second": ("DPNet w/ Graph Second", "Block-wise two perspectives"),
    "dpnet": ("DPNet w/ Graph First", "Block-wise two perspectives"),
}


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


def replicate_available() -> bool:
    """Whether this build can train with replicas (the sub-event sampler module is present)."""
    return importlib.util.find_spec("avel_dgl.data.subevents") is not None


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
        results = json.loads((folder / "results.json").read_text())
    except (OSError, ValueError):
        return None
    return results if isinstance(results, dict) and all(k in results for k in RESULT_KEYS) else None


def _shared(base: Config) -> Config:
    """The config every cell of a grid shares: the fields a cell sets itself at fixed values."""
    return replace(base, **{"model.variant": "dpnet", "train.task": "sel", "train.replicate": False,
                            "train.link": False, "train.seed": 0})


GRID_FOLDER = OwnedFolder("ablate grid", MANIFEST)


def check_grid_folder(out_dir: Path, data_dir: Path, base: Config, write: bool) -> None:
    """Refuse to mix runs of different settings in one grid folder; record them for a new one."""
    out_dir, data = Path(out_dir), str(Path(data_dir).resolve())
    path = out_dir / MANIFEST
    if check_owned_folder(out_dir, GRID_FOLDER, overwrite=None):  # a grid continues, never replaced
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
        model = build(config, "dgl")  # the kernel changes no layer or parameter
    return {"layers": describe(perspective_layers(model)), "params": sum(p.numel() for p in model.parameters())}


@dataclass
class Cell:
    variant: str
    column: str
    seed: int
    folder: Path


def plan(base: Config, out_dir: Path, variants: list[str], columns: list[str], seeds: int) -> list[Cell]:
    """The runs of the grid, seed-major (a stopped grid has whole tables for its first seeds)."""
    return [Cell(v, c, s, run_dir(out_dir, v, c, s)) for s in range(seeds) for v in variants for c in columns
            if applicable(base, v, c)]


def training_seconds(folder: Path) -> float | None:
    """Seconds a run spent in its epochs: metrics.csv's per-epoch seconds, summed. Unlike the wall
    time of the last attempt, this is the whole run's cost even when it was resumed."""
    try:
        with open(folder / "metrics.csv", newline="") as f:
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
            raise interrupt.stopped(e.signum, "ablate", f"{done} of {len(cells)} runs done; run the same "
                                                        f"avel-dgl ablate command again to continue") from None
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


def finished_variants(out_dir: Path) -> list[str]:
    """The variants of which the grid folder holds at least one finished run."""
    return [v for v in VARIANTS if any(read_results(folder) is not None for folder in (Path(out_dir) / v).glob("*/seed*"))]


def summarize(base: Config, out_dir: Path, variants: list[str], seeds: int) -> list[dict]:
    """One row per label set, variant and column over seeds 0..seeds-1: mean and sample std (%).
    The variants are those asked for and every other one with a finished run in the grid folder
    (a rerun of some variants keeps the others in the table)."""
    variants = [v for v in VARIANTS if v in variants or v in finished_variants(out_dir)]
    rows = []
    info = {v: variant_summary(base, v) for v in variants}
    for label_set in LABEL_SETS:
        for number, variant in enumerate(VARIANTS, 1):
            if variant not in variants:
                continue
            network, setting = NETWORKS.get(variant, (variant, ""))
            for c in COLUMNS:
                values, skipped = [], 0
                for seed in range(seeds):
                    results = read_results(run_dir(out_dir, variant, c.name, seed))
                    if results is not None and results[f"test_acc_{label_set}"] is None:
                        skipped += 1  # finished without this label set's file (right_labels.h5)
                    elif results is not None:
                        values.append(100 * results[f"test_acc_{label_set}"])
                if not applicable(base, variant, c.name):
                    status = "N/A"
                elif skipped and not values:
                    status = "skipped"
                else:
                    status = "done" if len(values) == seeds else "partial" if values else "not run"
                rows.append({
                    "label_set": label_set, "row": number, "network": network, "setting": setting,
                    "variant": variant, **info[variant], "column": c.name, "title": c.title, "status": status,
                    "seeds": len(values), "of_seeds": seeds,
                    "mean_pct": round(statistics.mean(values), 4) if values else None,
                    "std_pct": round(statistics.stdev(values), 4) if len(values) > 1 else None,
                    "values_pct": ";".join(f"{x:.4f}" for x in values),
                })
    return rows


def _cell_text(row: dict, best: bool) -> str:
    if row["status"] in ("N/A", "not run", "skipped"):
        return row["status"]
    text = f"{row['mean_pct']:.2f}"
    if row["std_pct"] is not None:
        text += f" ± {row['std_pct']:.2f}"
    if best:
        text = f"**{text}**"
    if row["status"] == "partial":
        text += f" ({row['seeds']}/{row['of_seeds']} seeds)"
    return text


def markdown(rows: list[dict]) -> str:
    """Table 3's layout, one table per label set; the best mean of each column in bold."""
    parts = []
    for label_set in LABEL_SETS:
        mine = [r for r in rows if r["label_set"] == label_set]
        if not mine:
            continue
        seeds = mine[0]["of_seeds"]
        best = {c.name: max((r["mean_pct"] for r in mine if r["column"] == c.name and r["mean_pct"] is not None),
                            default=None) for c in COLUMNS}
        parts.append(f"{label_set.upper()}: test accuracy (%) of the validation-selected checkpoint, "
                     f"mean ± std over {seeds} seed{'s' if seeds > 1 else ''}\n")
        parts.append("| # | Network | Perspective setting | Layers | Params | "
                     + " | ".join(c.title for c in COLUMNS) + " |")
        parts.append("|---|---|---|---|---:|" + "---:|" * len(COLUMNS))
        for variant in dict.fromkeys(r["variant"] for r in mine):
            cells = {r["column"]: r for r in mine if r["variant"] == variant}
            first = next(iter(cells.values()))
            texts = [_cell_text(cells[c.name], cells[c.name]["mean_pct"] == best[c.name]) for c in COLUMNS]
            layers = first["layers"].replace("|", "\\|")  # a PPBlock's 'RGCT||TCN' inside a table cell
            parts.append(f"| {first['row']} | {first['network']} | {first['setting']} | {layers} | "
                         f"{first['params'] / 1e6:.2f}M | " + " | ".join(texts) + " |")
        parts.append("")
    return "\n".join(parts)


CSV_FIELDS = ["label_set", "row", "network", "setting", "variant", "layers", "params", "column", "title",
              "status", "seeds", "of_seeds", "mean_pct", "std_pct", "values_pct"]


def write_tables(out_dir: Path, rows: list[dict]) -> None:
    """table.csv and table.md, each written atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(Path(out_dir) / "table.csv", text.getvalue())
    write_text_atomic(Path(out_dir) / "table.md", markdown(rows))
