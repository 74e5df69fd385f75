"""Training runs in pinned worker processes, `jobs` at a time: `ablate --jobs` and
benchmarks/accuracy_study.py.

Each worker is a process of its own, 'spawn'd (no torch or DGL thread pool is inherited
half-initialised through fork), pinned for its whole life to a core of its own where there are
enough, with one torch thread (`runtime.worker_cores`, `runtime.pin_worker`): a run's results are
then those of the same run alone at one thread. A worker takes the next task as it finishes one.
Each talks to the parent over a pipe of its own: no lock shared between processes, which one
killed while holding it would leave taken. Whatever stops the pool (a signal, a failed task, a
dead worker) stops every worker first with SIGTERM, which one in a `train.train_run` answers with
a resumable last.pt.
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import signal
import time
import traceback
from typing import Any, Callable

from avel_dgl.errors import AvelError, Interrupted
from avel_dgl.runtime import pin_worker, worker_cores

# work(task, echo) -> result, run in a worker: a module-level function (or a functools.partial of
# one) so that it can be sent to a spawned process; `echo` sends a line to the parent's echo.
Work = Callable[[Any, Callable[[str], None]], Any]


def run_in_workers(work: Work, tasks: list, jobs: int, echo: Callable[[str], None],
                   done: Callable[[Any, Any, float], None], again: str) -> None:
    """Run work(task, echo) for every task in min(jobs, tasks) worker processes, calling
    done(task, result, seconds) in this process as each one finishes. A task's str() names it in
    the message of a worker that crashed. A task stopped by a signal stops the pool as if this
    process had the signal (Interrupted); an AvelError in a task is raised here with its message;
    `again` ends the message of a worker that died ('run the same ... again to continue')."""
    ctx = mp.get_context("spawn")
    cores = worker_cores(min(jobs, len(tasks)))
    pending = list(tasks)
    workers = {}  # connection -> process
    try:
        for core in cores:
            mine, theirs = ctx.Pipe()
            worker = ctx.Process(target=_worker, args=(core, len(cores), work, theirs), daemon=True)
            worker.start()
            theirs.close()
            workers[mine] = worker
            mine.send(pending.pop(0))
        left = len(tasks)
        while left:
            for conn in mp.connection.wait(list(workers), timeout=1.0):
                try:
                    kind, task, *rest = conn.recv()
                except EOFError:  # the worker has exited: its exit code says why
                    _worker_gone(workers.pop(conn), again)
                    continue
                if kind == "echo":
                    echo(rest[0])
                elif kind == "done":
                    left -= 1
                    conn.send(pending.pop(0) if pending else None)  # None: nothing left, exit
                    done(task, *rest)
                elif kind == "error":
                    raise AvelError(rest[0])
                else:
                    raise RuntimeError(f"{task}: a worker failed (its traceback is above)")
    finally:
        stop_workers(list(workers.values()))


def stop_workers(workers: list, grace: float = 60.0) -> None:
    """SIGTERM to every live worker, then wait for all of them; one still alive after `grace`
    seconds is killed outright, so that the pool always stops (a run stopped mid-epoch that way
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


def _worker_gone(worker, again: str) -> None:
    """A worker has exited. With 0 it had been told there was nothing left; by a signal of its own
    in a task (exit 128 + signal, as `_worker` leaves) the pool stops as if it had the signal;
    anything else is a fault."""
    worker.join()
    if worker.exitcode == 0:
        return
    if worker.exitcode in (128 + signal.SIGINT, 128 + signal.SIGTERM):  # stopped in a task
        raise Interrupted(worker.exitcode - 128)
    if worker.exitcode in (-signal.SIGINT, -signal.SIGTERM):  # by the signal's default action, between tasks
        raise Interrupted(-worker.exitcode)
    raise AvelError(f"--jobs: a worker process died (exit code {worker.exitcode}); finished runs are kept, {again}")


def _worker(core: int | None, processes: int, work: Work, conn) -> None:
    """A worker process of `run_in_workers`: runs the tasks it receives until a None, sending
    (kind, task, ...) back. A task stopped by a signal ends the process with exit code 128 + signal."""
    # Outside a task the parent alone decides when the pool stops (a terminal's Ctrl-C reaches every
    # process); inside one, train_run's own handlers stop it cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pin_worker(core, processes)
    while True:
        # Between tasks SIGTERM is the default, a plain exit (a run's handlers may not all be undone
        # when a signal came as train_run was restoring them).
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if (task := conn.recv()) is None:
            break
        start = time.perf_counter()
        try:
            result = work(task, lambda line, task=task: conn.send(("echo", task, line)))
        except Interrupted as e:
            raise SystemExit(e.exit_code) from None
        except AvelError as e:
            conn.send(("error", task, str(e)))
            return
        except Exception:
            traceback.print_exc()
            conn.send(("crash", task))
            return
        conn.send(("done", task, result, time.perf_counter() - start))
