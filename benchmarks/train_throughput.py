"""Training and inference throughput of DPNet on CPU, against the model's matrix-product floor.

For each preset, one training step (forward, backward, optimizer) on a batch of random inputs is
timed, and so is a replay of the step's matrix products alone: every aten mm/addmm/bmm/
convolution (forward and backward) the step dispatches is recorded with its shapes, then re-run
on fresh tensors of those shapes. step / floor says how far the implementation is from the cost
its arithmetic forces. Step and floor are measured alternately in the same run, medians
reported, so machine noise hits both alike.

    python benchmarks/train_throughput.py [--presets paper,small] [--batch 48] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from avel_dgl import engine, graph
from avel_dgl.config import get_preset
from avel_dgl.nn.dpnet import build

MATMUL_OPS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default,
              torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default}


class RecordMatmuls(TorchDispatchMode):
    """Records (op, args) of every matrix product dispatched inside the `with` block."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in MATMUL_OPS:
            self.calls.append((func, args, kwargs or {}))
        return func(*args, **(kwargs or {}))


def fresh_like(x):
    if isinstance(x, torch.Tensor):
        return torch.randn(x.shape, dtype=x.dtype).as_strided(x.shape, x.stride()) if x.is_contiguous() \
            else torch.randn(x.shape, dtype=x.dtype)
    if isinstance(x, (list, tuple)):
        return type(x)(fresh_like(v) for v in x)
    return x


def make_step(config, batch: int):
    model = build(config, "dgl")
    optim = torch.optim.Adam(model.parameters(), lr=1e-4)
    audio, visual = torch.randn(batch, 10, 128), torch.randn(batch, 10, 512)
    labels = torch.randint(0, 29, (batch, 10))

    def step():
        g = graph.batch_graph(batch)
        loss = engine.sel_loss(model(g, audio, visual), labels)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()

    @torch.no_grad()
    def infer():
        model.eval()
        model(graph.batch_graph(batch), audio, visual)
        model.train()

    return model, step, infer


def timed(fn, n=1):
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def bench(preset: str, batch: int, repeats: int) -> dict:
    config = get_preset(preset)
    model, step, infer = make_step(config, batch)
    step()  # warm up (allocations, graph template)
    recorder = RecordMatmuls()
    with recorder:
        step()
    replay = [(f, fresh_like(a), k) for f, a, k in recorder.calls]

    def floor():
        for f, a, k in replay:
            f(*a, **k)

    steps, floors, infers = [], [], []
    for _ in range(repeats):
        steps.append(timed(step))
        floors.append(timed(floor))
        infers.append(timed(infer))
    s, f, i = statistics.median(steps), statistics.median(floors), statistics.median(infers)
    return {"preset": preset, "batch": batch, "params": sum(p.numel() for p in model.parameters()),
            "matmuls": len(replay), "step_s": s, "floor_s": f, "ratio": s / f,
            "train_videos_s": batch / s, "infer_videos_s": batch / i}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="paper,small")
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"threads={args.threads} batch={args.batch} repeats={args.repeats} (medians)")
    print("| preset | params | matmuls/step | step (s) | matmul floor (s) | step / floor | train videos/s | inference videos/s |")
    print("|---|---|---|---|---|---|---|---|")
    for preset in args.presets.split(","):
        r = bench(preset, args.batch, args.repeats)
        print(f"| {r['preset']} | {r['params'] / 1e6:.2f} M | {r['matmuls']} | {r['step_s']:.3f} | {r['floor_s']:.3f} | "
              f"{r['ratio']:.2f} | {r['train_videos_s']:.1f} | {r['infer_videos_s']:.1f} |")


if __name__ == "__main__":
    main()
