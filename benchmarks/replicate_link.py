"""Replicate and Link cost: training throughput with and without replicas/link, in one run, and
the share of a step spent assembling replicas and fetching the linked graph.

    python benchmarks/replicate_link.py --data DIR [--preset small] [--rounds 3] [--threads 1]

Three modes train from the same initial weights through the real engine (`train_one_epoch`):
base, +replicate, +replicate+link. Epochs are interleaved (base, rep, link, base, ...) for
`--rounds` rounds so that load from other processes hits all modes alike; the median epoch time
of each mode is reported. Throughput counts original training videos per second (a replicate step
runs the network on twice as many videos). Assembly = the replica sampler's call (draw + gather),
timed by wrapping it; linking = concatenating originals and replicas and fetching the cached
linked graph, timed separately over the same batch shapes. The first-use cost of building a
linked template (once per batch shape) is reported too.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from avel_dgl import engine, graph
from avel_dgl.config import get_preset, replace
from avel_dgl.data.dataset import load_split
from avel_dgl.data.subevents import ReplicaSampler, build_database
from avel_dgl.nn.dpnet import build
from avel_dgl.train import make_optimizer, make_scheduler, set_seed


class Timed:
    """Wraps the replica sampler, summing the seconds spent in it."""

    def __init__(self, fn):
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, index):
        start = time.perf_counter()
        out = self.fn(index)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def link_seconds(train, sampler, batch_size: int, repeats: int = 200) -> float:
    """Seconds per step for the engine's cat of originals and replicas plus the graph fetch."""
    index = torch.arange(min(batch_size, len(train)))
    rep_a, rep_v = sampler(index)
    graph.batch_graph(2 * len(index), linked=True)  # built once, as in training
    start = time.perf_counter()
    for _ in range(repeats):
        torch.cat([train.audio[index], rep_a]), torch.cat([train.visual[index], rep_v])
        torch.cat([train.segment_labels[index]] * 2)
        graph.batch_graph(2 * len(index), linked=True)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    config = get_preset(args.preset)
    train = load_split(args.data, "train")
    t = config.train
    steps = -(-len(train) // t.batch_size)
    start = time.perf_counter()
    db = build_database(train)
    sampler = Timed(ReplicaSampler(train, db, seed=0))
    setup = time.perf_counter() - start
    start = time.perf_counter()
    graph._batch_template.__wrapped__(2 * t.batch_size, True, 10)  # uncached: the build itself
    template = time.perf_counter() - start

    modes = {"base": (False, False), "+replicate": (True, False), "+replicate+link": (True, True)}
    state = {}
    for name, (rep, link) in modes.items():
        set_seed(0)
        cfg = replace(config, **{"train.replicate": rep, "train.link": link})
        model = build(cfg, "dgl")
        opt = make_optimizer(model, cfg)
        state[name] = (cfg, model, opt, make_scheduler(opt, cfg, steps), torch.Generator().manual_seed(0))
    times = {name: [] for name in modes}
    assembly = {name: [] for name in modes}
    for r in range(args.rounds + 1):  # round 0 warms up caches and allocators; not counted
        for name, (rep, _link) in modes.items():
            cfg, model, opt, sched, gen = state[name]
            before = sampler.seconds
            start = time.perf_counter()
            engine.train_one_epoch(model, train, opt, sched, cfg.train, gen, sampler if rep else None)
            if r:
                times[name].append(time.perf_counter() - start)
                assembly[name].append(sampler.seconds - before)
    link_step = link_seconds(train, sampler, t.batch_size)

    print(f"data {args.data}: {len(train)} training videos, batch {t.batch_size}, {steps} steps/epoch, "
          f"preset {args.preset}, {torch.get_num_threads()} thread(s), {args.rounds} rounds")
    print(f"database build + replica plan: {setup * 1e3:.1f} ms once; linked template "
          f"({2 * t.batch_size} videos): {template * 1e3:.1f} ms once per batch shape")
    base = statistics.median(times["base"])
    print(f"{'mode':<17}{'epoch s':>9}{'videos/s':>10}{'vs base':>9}{'assembly %':>12}{'+link %':>9}")
    for name in modes:
        epoch = statistics.median(times[name])
        asm = statistics.median(assembly[name]) / epoch * 100
        lnk = link_step * steps / epoch * 100 if modes[name][0] else 0.0
        print(f"{name:<17}{epoch:>9.2f}{len(train) / epoch:>10.1f}{base / epoch:>9.2f}{asm:>12.2f}{lnk:>9.2f}")


if __name__ == "__main__":
    main()
