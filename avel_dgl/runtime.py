"""Where and how this process computes: the `Runtime` (device, eq 12 kernel, rank, world size),
made once where a process starts (each command that runs a model, each torchrun rank, each
`ablate --jobs` worker) and passed explicitly to whatever builds or runs a model; and the
process-level setup that goes with it: torch threads and worker cores.

Nothing here reads data. The kernels themselves live in graph.py; the process group in
distributed.py.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from functools import lru_cache

import torch

from avel_dgl import distributed, graph
from avel_dgl.errors import AvelError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
KERNELS = ("auto", "dgl", "torch")


@dataclass(frozen=True)
class Runtime:
    """device: where tensors live. kernel: eq 12's kernel, 'dgl' or 'torch' (graph.py), held by
    every graph layer a model is built with. rank, world_size: this process among torchrun's
    (0 of 1 outside torchrun)."""

    device: torch.device
    kernel: str
    rank: int = 0
    world_size: int = 1

    def __post_init__(self):
        if self.kernel not in ("dgl", "torch"):
            raise ValueError(f"a Runtime holds a resolved kernel, 'dgl' or 'torch', found '{self.kernel}'")

    @classmethod
    def create(cls, device: str = "auto", kernel: str = "auto") -> Runtime:
        """The runtime of this process from the --device and --kernel names ('auto' resolved
        here, once). Under torchrun, rank and world size are the ones it gave this process."""
        resolved = resolve_device(device)
        return cls(resolved, resolve_kernel(kernel, resolved), int(os.environ.get("RANK", 0)),
                   int(os.environ.get("WORLD_SIZE", 1)))

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes logs, checkpoints and results."""
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    """'auto': this process's GPU if torch sees one, else the CPU. 'cuda': this process's GPU
    (cuda:LOCAL_RANK under torchrun), an error if there is none. 'cpu': the CPU."""
    if name not in DEVICES:
        raise AvelError(f"--device: expected one of {', '.join(DEVICES)}, found '{name}'")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise AvelError("--device cuda: torch sees no CUDA device on this machine; use --device cpu or auto")
    local_rank = distributed.local_rank()
    if local_rank >= torch.cuda.device_count():
        raise AvelError(f"--device cuda: process {local_rank} on this machine needs GPU {local_rank}, "
                        f"found {torch.cuda.device_count()} GPUs")
    return torch.device("cuda", local_rank)


@lru_cache(maxsize=None)
def dgl_supports(device_type: str) -> bool:
    """Whether the installed DGL can hold a graph on this device type (PyPI's DGL: 'cpu' only;
    none where DGL does not import)."""
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
    return _resolve(kernel, torch.device(device).type)


def _no_dgl_on(device_type: str) -> str:
    """Why the DGL kernel cannot run on this device type."""
    if graph.dgl is None:
        return f"DGL does not import here ({graph.DGL_MISSING})"
    return f"the installed DGL {graph.dgl.__version__} cannot run on {device_type}"


@lru_cache(maxsize=None)
def _resolve(kernel: str, device_type: str) -> str:
    if kernel not in KERNELS:
        raise AvelError(f"--kernel: expected one of {', '.join(KERNELS)}, found '{kernel}'")
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
    if kernel == "auto" and graph.dgl is None and int(os.environ.get("RANK", 0)) == 0:
        print(f"avel-dgl: notice: eq 12 runs on the torch kernel: {_no_dgl_on(device_type)}", file=sys.stderr, flush=True)
    return chosen


def set_threads(processes: int = 1) -> None:
    """Cores divided by processes: oversubscribing the cores makes torch many times slower.
    Counts the cores this process may run on, so `taskset -c 0 avel-dgl ...` means one thread."""
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
