"""Data-parallel training throughput: 1 process against K processes on this machine, same run.

Each configuration (processes:threads each) runs in fresh processes joined as torchrun would
join them (gloo on CPU). The default compares the project's rule, threads = cores // processes
(`runtime.set_threads`), for 1 and 2 processes, plus 1 process with 1 thread: on a busy machine
a multi-threaded process can lose most of its time waiting for its own threads. Every rank
builds the same model, wraps it in DDP, and runs `engine.train_one_epoch` (the training loop
itself: batch shards, loss scaling, gradient all-reduce, metrics combined) on random AVE-sized
inputs; one warm-up epoch, then timed epochs. Configurations alternate round by round so
machine noise hits them alike; medians are reported, with videos/s relative to the first.
Then, with 2 processes, it times the gradient all-reduce alone: one float32 tensor the size of
each preset's parameters (what DDP all-reduces per step, in buckets), medians of 3.

    python benchmarks/distributed_throughput.py [--preset small] [--configs 1:2,1:1,2:1] [--batch 32]
                                                [--steps 8] [--epochs 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from avel_dgl import distributed, engine
from avel_dgl.config import get_preset, replace
from avel_dgl.data.dataset import SplitData
from avel_dgl.format import AUDIO_DIM, N_CLASSES, N_SEGMENTS, VISUAL_DIM
from avel_dgl.nn.dpnet import build
from avel_dgl.train import make_optimizer, make_scheduler, set_seed


def random_split(n: int) -> SplitData:
    g = torch.Generator().manual_seed(0)
    return SplitData(torch.randn(n, N_SEGMENTS, AUDIO_DIM, generator=g),
                     torch.randn(n, N_SEGMENTS, VISUAL_DIM, generator=g),
                     torch.randint(0, N_CLASSES, (n, N_SEGMENTS), generator=g),
                     torch.randint(0, N_CLASSES, (n,), generator=g), torch.arange(n))


def rank_main(rank: int, world: int, threads: int, port: int, args: argparse.Namespace, result: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(threads)
    with distributed.process_group("cpu"):
        config = replace(get_preset(args.preset), **{"train.batch_size": args.batch})
        set_seed(0)
        model = build(config, "dgl")
        net = distributed.wrap(model)
        optimizer = make_optimizer(model, config)
        data = random_split(args.batch * args.steps)
        scheduler = make_scheduler(optimizer, config, args.steps)
        generator = torch.Generator().manual_seed(0)
        engine.train_one_epoch(net, data, optimizer, scheduler, config.train, generator)  # warm-up
        distributed.barrier()
        start = time.perf_counter()
        for _ in range(args.epochs):
            engine.train_one_epoch(net, data, optimizer, scheduler, config.train, generator)
        distributed.barrier()
        seconds = time.perf_counter() - start
        if distributed.is_main():
            params = sum(p.numel() for p in model.parameters())
            Path(result).write_text(f"{seconds} {params}")


def allreduce_main(rank: int, world: int, port: int, sizes: list[int], result: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    with distributed.process_group("cpu"):
        times = []
        for size in sizes:
            grad = torch.ones(size)
            dist.all_reduce(grad)  # warm-up: connections, buffers
            samples = []
            for _ in range(3):
                distributed.barrier()
                start = time.perf_counter()
                dist.all_reduce(grad)
                samples.append(time.perf_counter() - start)
            times.append(statistics.median(samples))
        if distributed.is_main():
            Path(result).write_text(" ".join(map(str, times)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(world: int, threads: int, args: argparse.Namespace) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        result = str(Path(tmp) / "result")
        mp.spawn(rank_main, args=(world, threads, free_port(), args, result), nprocs=world, join=True)
        seconds, params = Path(result).read_text().split()
    videos = args.batch * args.steps * args.epochs
    return videos / float(seconds), int(params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    cores = os.cpu_count() or 1
    default = f"1:{cores},1:1,2:{max(1, cores // 2)}" if cores > 1 else "1:1,2:1"
    parser.add_argument("--configs", default=default, help="processes:threads each, comma-separated")
    parser.add_argument("--batch", type=int, default=32, help="global batch")
    parser.add_argument("--steps", type=int, default=8, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    configs = [tuple(int(x) for x in c.split(":")) for c in args.configs.split(",")]
    rates = {c: [] for c in configs}
    params = 0
    for _ in range(args.rounds):
        for world, threads in configs:
            rate, params = run(world, threads, args)
            rates[(world, threads)].append(rate)
    base = statistics.median(rates[configs[0]])
    print(f"preset={args.preset} ({params / 1e6:.2f} M parameters) global batch={args.batch} steps/epoch={args.steps} "
          f"timed epochs={args.epochs} rounds={args.rounds} cores={os.cpu_count()}")
    print(f"| processes | threads each | videos/s (median) | per round | vs {configs[0][0]}:{configs[0][1]} |")
    print("|---|---|---|---|---|")
    for world, threads in configs:
        median = statistics.median(rates[(world, threads)])
        print(f"| {world} | {threads} | {median:.1f} | {', '.join(f'{r:.1f}' for r in rates[(world, threads)])} | "
              f"{median / base:.2f}x |")
    sizes = {name: sum(p.numel() for p in build(get_preset(name), "dgl").parameters()) for name in ("small", "paper")}
    with tempfile.TemporaryDirectory() as tmp:
        result = str(Path(tmp) / "result")
        mp.spawn(allreduce_main, args=(2, free_port(), list(sizes.values()), result), nprocs=2, join=True)
        times = [float(t) for t in Path(result).read_text().split()]
    print("\n| gradient all-reduced (2 processes, gloo, this machine) | size | seconds (median of 3) |")
    print("|---|---|---|")
    for (name, size), seconds in zip(sizes.items(), times):
        print(f"| {name} preset | {size * 4 / 2**20:.1f} MiB | {seconds:.3f} |")


if __name__ == "__main__":
    main()
