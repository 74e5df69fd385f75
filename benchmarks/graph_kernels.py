"""The two eq 12 kernels on the CPU: DGL message passing against the torch sparse product.

Times (a) eq 12 alone, forward and backward, on a linked batch (B originals + B replicas) at the
paper's width, and (b) a whole training step of the small preset with replicate-and-link-shaped
batches, each kernel alternating with the other in the same run; medians reported.

    python benchmarks/graph_kernels.py [--batch 48] [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from avel_dgl import engine, graph
from avel_dgl.config import get_preset
from avel_dgl.nn.dpnet import build

KERNELS = ("dgl", "torch")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def eq12_step(batch: int, width: int):
    g = graph.batch_graph(2 * batch, linked=True)
    n = g.num_nodes(graph.AUDIO)
    audio = torch.randn(n, width, requires_grad=True)
    visual = torch.randn(n, width, requires_grad=True)

    def run(kernel: str) -> None:
        out = graph.neighbour_means(g, {graph.AUDIO: audio, graph.VISUAL: visual}, kernel=kernel)
        (out[graph.AUDIO].sum() + out[graph.VISUAL].sum()).backward()
    return run


def train_step(batch: int):
    config = get_preset("small")
    model = build(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    audio, visual = torch.randn(2 * batch, 10, 128), torch.randn(2 * batch, 10, 512)
    labels = torch.randint(0, 29, (2 * batch, 10))
    g = graph.batch_graph(2 * batch, linked=True)

    def run(kernel: str) -> None:
        graph.set_kernel(kernel)
        loss = engine.sel_loss(model(g, audio, visual), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=48, help="originals per batch (plus as many replicas)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cases = {"eq 12 alone, width 768 (forward + backward)": eq12_step(args.batch, 768),
             "training step, small preset": train_step(args.batch)}
    print(f"threads={args.threads} batch={args.batch} originals + {args.batch} linked replicas, "
          f"repeats={args.repeats} (medians, kernels alternating)")
    print("| what | dgl (ms) | torch (ms) | torch / dgl |")
    print("|---|---|---|---|")
    for name, run in cases.items():
        for kernel in KERNELS:  # warm-up: caches, allocator
            run(kernel)
        times = {k: [] for k in KERNELS}
        for _ in range(args.repeats):
            for kernel in KERNELS:
                times[kernel].append(timed(lambda: run(kernel)))
        d, t = (statistics.median(times[k]) * 1000 for k in KERNELS)
        print(f"| {name} | {d:.1f} | {t:.1f} | {t / d:.2f} |")
    graph.set_kernel("auto")


if __name__ == "__main__":
    main()
