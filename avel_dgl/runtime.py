"""Where and how this process computes: the `Runtime` (device, eq 12 kernel, rank, world size,
progress bars on or off, cache folder; and the torch threads it set), made once where a process
starts by `Runtime.for_process`, from the options every command shares (cli/options.py), and
passed explicitly to whatever builds or runs a model. Each torchrun rank makes its own; `ablate
--jobs` workers get the grid's and pin themselves (`pin_worker`).

This module is the one reader of torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE): distributed.py joins the process group it describes and owns the collectives.
Nothing here reads data. torch is imported only to resolve a device or set threads, and DGL only
to resolve a kernel, so the command line takes DEVICES and KERNELS from here for its --help. The
kernels themselves live in graph.py.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from avel_dgl.errors import AvelError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
KERNELS = ("auto", "dgl", "torch")


# --- torchrun's description of this process (outside torchrun: rank 0 of 1) ------------------------

def launch_rank() -> int:
    """This process's rank as torchrun gave it, known before the process group is joined."""
    return int(os.environ.get("RANK", 0))


def launch_world_size() -> int:
    """Processes of the run, over all machines (torchrun's WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", 1))


def launched() -> bool:
    """Whether torchrun started this process as one of several."""
    return launch_world_size() > 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def local_world_size() -> int:
    """Processes on this machine (torchrun's LOCAL_WORLD_SIZE; 1 outside torchrun)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", 1))


@dataclass(frozen=True)
class Runtime:
    """device: where tensors live (None for a command that runs no network, e.g. check-data).
    kernel: eq 12's kernel, 'dgl' or 'torch' (graph.py), held by every graph layer a model is
    built with (None where the process builds no DPNet: extract). rank, world_size: this process
    among torchrun's (0 of 1 outside torchrun). `quiet`, `cache_dir` and `threads` read the process
    state that `for_process` set (one copy of each: the progress bars' switch, the cache folder
    this process and those it starts share, torch's threads)."""

    device: torch.device | None
    kernel: str | None
    rank: int = 0
    world_size: int = 1

    def __post_init__(self):
        if self.kernel not in ("dgl", "torch", None):  # None: this process builds no DPNet
            raise ValueError(f"a Runtime holds a resolved kernel, 'dgl' or 'torch' (or None), found '{self.kernel}'")

    @classmethod
    def create(cls, device: str = "auto", kernel: str = "auto") -> Runtime:
        """Where to compute, from the --device and --kernel names ('auto' resolved here, once),
        with torchrun's rank and world size, changing nothing in the process: for code that
        builds a model inside a process already set up (tests, benchmarks, workers). Commands
        use `for_process`."""
        resolved = resolve_device(device)
        return cls(resolved, resolve_kernel(kernel, resolved), launch_rank(), launch_world_size())

    @classmethod
    def for_process(cls, device: str | None = "auto", kernel: str | None = "auto", *, quiet: bool = False,
                    cache_dir: str | Path | None = None, processes: int | None = None) -> Runtime:
        """Set up this process and return its Runtime: the one place a command turns the shared
        options (--device, --kernel, --quiet, --cache-dir) into process state.

        device, kernel: --device and --kernel names; device None: no network runs here (no torch
        threads set, no kernel); kernel None: no DPNet (extract: no eq 12 notice either).
        quiet: progress bars off for the whole process, or on (each command sets it anew, since
        several commands may run in one process). cache_dir: the cache folder for this process
        and every process it starts (ablate's workers inherit it through the environment,
        data/cache.py's CACHE_ENV; train --nproc passes its --cache-dir to each rank, which sets
        it here); None keeps an inherited one. processes: how
        many processes share this machine's cores (torch threads = cores // processes; default:
        torchrun's processes on this machine, 1 outside torchrun)."""
        from avel_dgl import progress
        from avel_dgl.data.cache import use_cache_dir

        progress.set_quiet(quiet)
        if cache_dir is not None:
            use_cache_dir(cache_dir)
        if device is None:
            return cls(None, None, launch_rank(), launch_world_size())
        set_threads(local_world_size() if processes is None else processes)
        resolved = resolve_device(device)
        return cls(resolved, None if kernel is None else resolve_kernel(kernel, resolved), launch_rank(),
                   launch_world_size())

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes logs, checkpoints and results."""
        return self.rank == 0

    @property
    def quiet(self) -> bool:
        """No progress bars in this process (`progress.bar`; --quiet, set by for_process)."""
        from avel_dgl import progress

        return not progress.shown()

    @property
    def cache_dir(self) -> Path | None:
        """The cache folder in force for this process and those it starts (--cache-dir, or one
        inherited), None for each data folder's own (data/cache.py)."""
        from avel_dgl.data.cache import cache_dir_in_force

        return cache_dir_in_force()

    @property
    def threads(self) -> int:
        """The torch threads this process computes with (for_process's share of the cores, or a
        pinned worker's one)."""
        import torch

        return torch.get_num_threads()


def resolve_device(name: str) -> torch.device:
    """'auto': this process's GPU if torch sees one, else the CPU. 'cuda': this process's GPU
    (cuda:LOCAL_RANK under torchrun), an error if there is none. 'cpu': the CPU."""
    import torch

    if name not in DEVICES:
        raise AvelError(f"--device: expected one of {', '.join(DEVICES)}, found '{name}'")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise AvelError("--device cuda: torch sees no CUDA device on this machine; use --device cpu or auto")
    rank = local_rank()
    if rank >= torch.cuda.device_count():
        raise AvelError(f"--device cuda: process {rank} on this machine needs GPU {rank}, "
                        f"found {torch.cuda.device_count()} GPUs")
    return torch.device("cuda", rank)


@lru_cache(maxsize=None)
def dgl_supports(device_type: str) -> bool:
    """Whether the installed DGL can hold a graph on this device type (PyPI's DGL: 'cpu' only;
    none where DGL does not import)."""
    from avel_dgl import graph  # imports DGL: only where a kernel is resolved

    dgl = graph.dgl
    if dgl is None:
        return False
    if device_type == "cpu":
        return True
    try:
        dgl.graph(([0], [0])).to(device_type)
        return True
    except Exception:  # DGL raises DGLError or torch's RuntimeError, depending on the build
        return False


def resolve_kernel(kernel: str, device: torch.device | str) -> str:
    """'dgl' or 'torch': the eq 12 kernel for `device` under the --kernel name. 'auto' takes DGL
    where the installed DGL supports the device, else torch (with a notice on stderr where DGL
    does not import at all)."""
    import torch

    return _resolve(kernel, torch.device(device).type)


def _no_dgl_on(device_type: str) -> str:
    """Why the DGL kernel cannot run on this device type."""
    from avel_dgl import graph

    if graph.dgl is None:
        return f"DGL does not import here ({graph.DGL_MISSING})"
    return f"the installed DGL {graph.dgl.__version__} cannot run on {device_type}"


@lru_cache(maxsize=None)
def _resolve(kernel: str, device_type: str) -> str:
    if kernel not in KERNELS:
        raise AvelError(f"--kernel: expected one of {', '.join(KERNELS)}, found '{kernel}'")
    from avel_dgl import graph

    supported = dgl_supports(device_type)
    if kernel == "dgl" and not supported:
        raise AvelError(f"--kernel dgl: {_no_dgl_on(device_type)}; use --kernel torch or auto")
    chosen = kernel if kernel != "auto" else ("dgl" if supported else "torch")
    if kernel != "auto":
        why = "as asked"
    elif supported:
        why = "DGL supports this device"
    else:
        why = f"DGL {graph.dgl.__version__} has no {device_type} support" if graph.dgl is not None else "DGL does not import"
    # lru_cache makes these lines appear once per (kernel, device type) in a process. Without DGL
    # at all, every command says so on stderr too (rank 0 alone under torchrun), since its log
    # lines reach stdout only in train and evaluate.
    log.info("graph kernel for eq 12 on %s: %s (%s)", device_type, chosen, why)
    if kernel == "auto" and graph.dgl is None and launch_rank() == 0:
        print(f"avel-dgl: notice: eq 12 runs on the torch kernel: {_no_dgl_on(device_type)}", file=sys.stderr, flush=True)
    return chosen


def set_threads(processes: int = 1) -> None:
    """Cores divided by processes: oversubscribing the cores makes torch many times slower.
    Counts the cores this process may run on, so `taskset -c 0 avel-dgl ...` means one thread."""
    import torch

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // processes))


def worker_cores(processes: int) -> list[int | None]:
    """The core each of `processes` worker processes is pinned to: its own one where this process
    may run on enough cores, else None for every worker (unpinned, sharing them all)."""
    cores = sorted(os.sched_getaffinity(0))
    return cores[:processes] if processes <= len(cores) else [None] * processes


def pin_worker(core: int | None, processes: int) -> None:
    """Run this worker process on `core` (from `worker_cores`) with `set_threads`' share of the
    cores: one thread when pinned, and one when unpinned too since processes then outnumber cores."""
    if core is not None:
        os.sched_setaffinity(0, {core})
    set_threads(1 if core is not None else processes)
