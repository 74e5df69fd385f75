"""Data-parallel training on torch.distributed: the process group torchrun describes, rank shards
of batches and evaluation rows, agreement of metrics across ranks, rank-0-only side effects, and
the single-machine launcher behind `train --nproc K`. (Each process's device: runtime.py.)

Outside torchrun (no WORLD_SIZE in the environment) every function here is the identity of a
one-process run: rank 0 of 1, whole batches, no communication.

The data-parallel rule (docs/DISTRIBUTED.md): --batch-size is the global batch. Every rank draws
the same shuffled order from the shared seed, each global batch is split across the ranks, and
each rank's loss is scaled so that DDP's gradient average equals the gradient of the global
batch's mean loss. So K processes take the same optimizer steps as one process with the same
batch, and the learning rate needs no rescaling.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from typing import Callable, Iterable, Iterator

import torch
import torch.distributed as dist

from avel_dgl.errors import AvelError, ConfigError
from avel_dgl.runtime import launch_rank, launched

# rank() and world_size() are the joined process group's (what the collectives below span); before
# the group is joined, and outside torchrun, a process is rank 0 of 1 here. What torchrun gave
# this process (known before joining) is runtime.py's: a Runtime's rank and world size.


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0: the one process that writes logs, checkpoints and results."""
    return rank() == 0


@contextlib.contextmanager
def errors_printed_once() -> Iterator[None]:
    """A command's AvelError under torchrun: every rank meets the same one (the same options on
    the same machine before the group is joined; the same collective state after), so rank 0
    raises it, to be printed once, and the others exit with its code, silently."""
    try:
        yield
    except AvelError as e:
        if launch_rank() == 0 or not launched():
            raise
        raise SystemExit(e.exit_code) from None


@contextlib.contextmanager
def process_group(device: torch.device | str) -> Iterator[None]:
    """Join the process group torchrun set up for the duration of the block: gloo when this
    process computes on the CPU, nccl on CUDA (`device`: its runtime.Runtime's). Outside torchrun
    this does nothing. Inside, the group's ranks are torchrun's (a Runtime's rank and world size)."""
    device = torch.device(device)
    if not launched() or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    # On an error the group is left as it is: the process ends, and torchrun stops the others.
    yield
    # Every rank finishes its last collective before any rank leaves.
    dist.barrier()
    # No destroy_process_group(): in torch 2.2 ~ProcessGroupGloo joins its worker threads while
    # holding the GIL, and a worker that still needs the GIL for a callback never finishes, so
    # the rank hangs (seen in a clean-clone test run: gdb showed exactly that join). This process
    # ends right after the block; at interpreter exit a thread waiting for the GIL exits instead.


def backend() -> str:
    return dist.get_backend() if dist.is_initialized() else "none"


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """DistributedDataParallel around `model` (already on its device) when there are several
    ranks; the model itself otherwise. Buffers are not broadcast each step: the only buffers are
    input statistics, identical on every rank."""
    if world_size() == 1:
        return model
    device = next(model.parameters()).device
    ddp = torch.nn.parallel.DistributedDataParallel
    # torch 2.14 deprecates broadcast_buffers for forward_sync_buffers (which still syncs buffers
    # once at init: harmless here, they are identical on every rank)
    no_buffer_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp).parameters
                      else {"broadcast_buffers": False})
    return ddp(model, device_ids=[device] if device.type == "cuda" else None, **no_buffer_sync)


def shard(batches: Iterable[torch.Tensor], rank_: int | None = None,
          world: int | None = None) -> list[tuple[torch.Tensor, float]]:
    """This rank's share of each global batch, with its loss scale.

    Share: rows rank, rank + K, ... of the batch. Scale: share size * K / batch size, so that the
    average of the K ranks' scaled mean losses (what DDP's gradient average differentiates) is the
    mean loss of the global batch. A last batch too small to give each rank a video joins the
    batch before it, so every video is still seen once per epoch.
    """
    r = rank() if rank_ is None else rank_
    k = world_size() if world is None else world
    batches = list(batches)
    if k > 1 and len(batches) > 1 and len(batches[-1]) < k:
        batches[-2:] = [torch.cat(batches[-2:])]
    if any(len(b) < k for b in batches):
        raise ConfigError("train.batch_size", f"each of the {k} processes needs at least one video of every batch, "
                        f"found a batch of {min(len(b) for b in batches)} videos")
    return [(b[r::k], len(b[r::k]) * k / len(b)) for b in batches]


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps in one epoch over n videos (the number of global batches `shard` makes)."""
    return len(shard(torch.arange(n).split(batch_size), 0))


def shard_rows(n: int) -> torch.Tensor:
    """This rank's rows of an n-row evaluation set: rank, rank + K, ..."""
    return torch.arange(rank(), n, world_size())


def gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """Reassemble the full (n, ...) tensor from every rank's `shard_rows` part, on every rank."""
    k = world_size()
    if k == 1:
        return local
    per_rank = -(-n // k)  # ceil: shards differ in length by at most one; pad to equal sizes
    padded = local.new_zeros((per_rank, *local.shape[1:]))
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(k)]
    dist.all_gather(parts, padded)
    # parts[r][j] is row r + j * k
    return torch.stack(parts, dim=1).reshape(per_rank * k, *local.shape[1:])[:n]


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of `x` over all ranks, on every rank (a copy; `x` is left as it was)."""
    x = x.clone()
    if world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def all_true(flag: torch.Tensor) -> bool:
    """Whether a boolean scalar is true on every rank, so that all ranks take the same branch."""
    if world_size() > 1:
        flag = flag.to(torch.int32)  # gloo reduces no bool tensors
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag)


def all_gather_object(obj: object) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank (picklable objects; small ones)."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def _share_main_error(error: AvelError | None) -> None:
    """Raise rank 0's user error (None: there was none) on every rank: rank 0 its own exception,
    the others the same message, so no rank goes on to wait for a partner that has stopped."""
    message = None if error is None else str(error)
    if world_size() > 1:
        box = [message]
        dist.broadcast_object_list(box, src=0)
        message = box[0]
    if error is not None:
        raise error
    if message is not None:
        raise AvelError(message)


def main_only(fn: Callable[..., object], *args, **kwargs) -> None:
    """Run fn on rank 0 only; every rank leaves after it has finished, and a user error there is
    raised on every rank."""
    error = None
    if is_main():
        try:
            fn(*args, **kwargs)
        except AvelError as e:
            error = e
    _share_main_error(error)


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block before the other ranks do: what it leaves on disk (the pooled visual
    cache) is then found by the others instead of being written by all of them at once. A user
    error in rank 0's block is raised on every rank before theirs runs."""
    if not is_main():
        _share_main_error(None)
        yield
        return
    error = None
    try:
        yield
    except AvelError as e:
        error = e
    _share_main_error(error)


def launch(nproc: int, argv: list[str]) -> int:
    """Run `python -m cli.main <argv>` as nproc ranks on this machine through torchrun's launcher
    (what `torchrun --standalone --nproc_per_node nproc` does). Returns the exit status: 0, or a
    failed rank's. A user error is printed by the rank itself, as one line."""
    import logging
    import sys
    import uuid

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if launched():
        raise AvelError("--nproc: this process was already started by torchrun; drop --nproc")
    # Threads per rank: cores divided by ranks (torchrun would set 1 and warn about it).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // nproc)))
    # The launcher's own log would repeat, at length, a failure the rank has reported.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=1)
    try:
        elastic_launch(config, sys.executable)("-u", "-m", "cli.main", *argv)
    except SignalException as e:  # Ctrl-C or SIGTERM: the launcher has stopped the ranks, and rank 0
        return 128 + e.sigval     # has said where its run stands and how to resume it
    except ChildFailedError as e:
        rank_, failure = e.get_first_failure()
        if failure.exitcode == 2:  # an AvelError: rank 0 has printed it
            return 2
        raise AvelError(f"--nproc: rank {rank_} of {nproc} failed with exit code {failure.exitcode} "
                        "(its output is above)") from None
    return 0
