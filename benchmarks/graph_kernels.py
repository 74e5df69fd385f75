"""The RGCT's graph kernels on the CPU: DGL message passing against the torch sparse product.

Times (a) eq 12 alone, forward and backward, on a linked batch (B originals + B replicas) at the
paper's width, and (b) a whole training step of the small preset with replicate-and-link-shaped
batches, each kernel alternating with the others in the same run; medians reported. Kernels:

    dgl              one multi_update_all per node type, the attention as its cross reducer
    dgl-update_all   the form before issue 13, kept here for comparison: one update_all per
                     relation (six), then the same cross-relation function on their results
    torch            the sparse product over the same edges (the GPU kernel)

    python benchmarks/graph_kernels.py [--batch 48] [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import dgl
import torch

from avel_dgl import engine, graph
from avel_dgl.config import get_preset
from avel_dgl.nn.dpnet import build

KERNELS = ("dgl", "dgl-update_all", "torch")


def update_all_per_relation(g, feats, cross_reducer, kernel, neighbour_norm="mean"):
    """graph.relational_update as it ran before issue 13: six update_all calls, one per relation
    (eq 12's mean only: this benchmark times the default norm)."""
    assert neighbour_norm == "mean", neighbour_norm
    out = {}
    with g.local_scope():
        for ntype, h in feats.items():
            g.nodes[ntype].data["h"] = h
        for ntype in graph.NODE_TYPES:
            means = []
            for rel in graph.RELATIONS_INTO[ntype]:
                g.update_all(dgl.function.copy_u("h", "m"), dgl.function.mean("m", "agg"), etype=rel)
                means.append(g.nodes[ntype].data.pop("agg"))
            out[ntype] = cross_reducer(ntype, means)
    return out


RELATIONAL_UPDATE = graph.relational_update


def use(kernel: str) -> str:
    """Select a kernel of KERNELS for what runs next: the form of DGL's (graph.relational_update
    swapped for the old one). Returns the kernel name graph functions and layers take."""
    graph.relational_update = update_all_per_relation if kernel == "dgl-update_all" else RELATIONAL_UPDATE
    return "torch" if kernel == "torch" else "dgl"


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
        out = graph.neighbour_means(g, {graph.AUDIO: audio, graph.VISUAL: visual}, use(kernel))
        (out[graph.AUDIO].sum() + out[graph.VISUAL].sum()).backward()
    return run


def train_step(batch: int):
    config = get_preset("small")
    # A model per kernel (layers take theirs at construction), starting from the same weights;
    # each steps its own copy, so the kernels time the same sizes of work.
    models = {name: build(config, name) for name in ("dgl", "torch")}
    models["torch"].load_state_dict(models["dgl"].state_dict())
    optimizers = {name: torch.optim.Adam(model.parameters(), lr=1e-4) for name, model in models.items()}
    audio, visual = torch.randn(2 * batch, 10, 128), torch.randn(2 * batch, 10, 512)
    labels = torch.randint(0, 29, (2 * batch, 10))
    g = graph.batch_graph(2 * batch, linked=True)

    def run(kernel: str) -> None:
        name = use(kernel)
        model, optimizer = models[name], optimizers[name]
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
    print("| what | " + " | ".join(f"{k} (ms)" for k in KERNELS) + " | dgl-update_all / dgl | torch / dgl |")
    print("|---" * (len(KERNELS) + 3) + "|")
    for name, run in cases.items():
        for kernel in KERNELS:  # warm-up: caches, allocator
            run(kernel)
        times = {k: [] for k in KERNELS}
        for _ in range(args.repeats):
            for kernel in KERNELS:
                times[kernel].append(timed(lambda: run(kernel)))
        ms = {k: statistics.median(times[k]) * 1000 for k in KERNELS}
        print(f"| {name} | " + " | ".join(f"{ms[k]:.1f}" for k in KERNELS)
              + f" | {ms['dgl-update_all'] / ms['dgl']:.2f} | {ms['torch'] / ms['dgl']:.2f} |")
    use("dgl")


if __name__ == "__main__":
    main()
