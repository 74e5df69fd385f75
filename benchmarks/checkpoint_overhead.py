"""What resumable checkpoints cost a training run: the end-of-epoch writes against the epoch.

For each preset, a run of random data the size of AVE's train split is built in memory, one
training step on a batch is timed, and so is `train.Run.end_epoch` in its most expensive form
(best.pt and last.pt with the full training state and metrics.csv, each written to a temporary
file, fsynced and renamed), and reading last.pt back (`read_checkpoint`: zip CRC check, then
torch.load). Step and writes are measured alternately in the same run, medians reported, so
machine noise hits both alike. Overhead per epoch = writes / (steps per epoch * step).

    python benchmarks/checkpoint_overhead.py [--presets paper,small] [--repeats 5] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from avel_dgl import engine, graph
from avel_dgl.checkpoint import read_checkpoint
from avel_dgl.config import get_preset
from avel_dgl.data.dataset import SplitData
from avel_dgl.format import AUDIO_DIM, N_CLASSES, N_SEGMENTS, VISUAL_DIM
from avel_dgl.nn.dpnet import build
from avel_dgl.runtime import Runtime
from avel_dgl.train import Run, data_fingerprint, make_optimizer, make_scheduler

AVE_TRAIN, AVE_VAL = 3339, 402  # videos in the AVE release's train and val splits


def random_split(n: int) -> SplitData:
    return SplitData(torch.randn(n, N_SEGMENTS, AUDIO_DIM), torch.randn(n, N_SEGMENTS, VISUAL_DIM),
                     torch.randint(0, N_CLASSES, (n, N_SEGMENTS)), torch.randint(0, N_CLASSES, (n,)),
                     torch.arange(n))


def make_run(preset: str, out_dir: Path) -> Run:
    config = get_preset(preset)
    train, val = random_split(AVE_TRAIN), random_split(AVE_VAL)
    runtime = Runtime.create("cpu")
    model = build(config, runtime.kernel)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, math.ceil(AVE_TRAIN / config.train.batch_size))
    return Run(config=config, data_dir=out_dir, out_dir=out_dir, runtime=runtime, train=train, val=val, model=model,
               optimizer=optimizer, scheduler=scheduler, generator=torch.Generator().manual_seed(0), replicas=None,
               subevents=None, fingerprints={"train": data_fingerprint(train), "val": data_fingerprint(val)})


def time_step(run: Run) -> float:
    b = run.config.train.batch_size
    index = torch.randint(0, len(run.train), (b,))
    start = time.perf_counter()
    logits = run.model(graph.batch_graph(b), run.train.audio[index], run.train.visual[index])
    loss = engine.sel_loss(logits, run.train.segment_labels[index])
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.scheduler.step()
    return time.perf_counter() - start


def time_writes(run: Run) -> float:
    run.best_acc = -1.0  # so best.pt is written too: the most expensive end of an epoch
    row = {"epoch": run.epoch + 1, "lr": "0.0001", "train_loss": "1.0", "train_acc": "0.5", "val_acc": "0.5",
           "seconds": "1.0"}
    start = time.perf_counter()
    run.end_epoch(row, 0.5)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="paper,small")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where to write the checkpoints (default: a temp dir)")
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    for preset in args.presets.split(","):
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            run = make_run(preset, Path(tmp))
            time_step(run)  # warm-up: graph template, Adam state
            steps, writes, reads = [], [], []
            for _ in range(args.repeats):
                steps.append(time_step(run))
                writes.append(time_writes(run))
                start = time.perf_counter()
                read_checkpoint(Path(tmp) / "last.pt")
                reads.append(time.perf_counter() - start)
            per_epoch = math.ceil(AVE_TRAIN / run.config.train.batch_size)
            step, write, read = (statistics.median(x) for x in (steps, writes, reads))
            params = sum(p.numel() for p in run.model.parameters())
            sizes = {name: (Path(tmp) / name).stat().st_size / 2**20 for name in ("best.pt", "last.pt")}
            print(f"{preset}: {params / 1e6:.1f} M parameters; best.pt {sizes['best.pt']:.1f} MiB, "
                  f"last.pt {sizes['last.pt']:.1f} MiB")
            print(f"  step (batch {run.config.train.batch_size}) {step:.3f} s; end-of-epoch writes {write:.3f} s; "
                  f"read last.pt {read:.3f} s")
            print(f"  writes / epoch of {per_epoch} steps: {100 * write / (per_epoch * step):.2f} %")


if __name__ == "__main__":
    main()
