"""What the tests share that is not a fixture: the tests' runtime, the DGL marker, data and CLI
helpers, the fault helpers and the fault tally. A plain module: test files (and tests/fault_runner.py)
import it by name; the fixtures stay in conftest.py, which pytest loads by itself."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from avel_dgl import graph
from avel_dgl.runtime import Runtime

# The runtime of the tests' models: the CPU and DGL's eq 12 kernel (what `--device auto` resolves
# to on a machine without a GPU; tests of the torch kernel make their own), or the torch kernel
# where DGL does not import (what `--device auto` resolves to there).
CPU = Runtime(torch.device("cpu"), graph.DEFAULT_KERNEL)

# Tests of DGL itself (its kernel against the torch kernel, the design-card tests): skipped, with
# the reason, where DGL does not import (scripts/check_current_stack.sh).
needs_dgl = pytest.mark.skipif(graph.dgl is None, reason=f"needs DGL, which does not import here ({graph.DGL_MISSING})")

SHARED_AVE = Path(__file__).resolve().parents[1].parent / "shared" / "ave"


def write_small_ave(out: Path, videos: int = 120, seed: int = 0) -> Path:
    """A small AVE-format folder: class prototypes plus noise, one event span per video.
    Easy on purpose: model tests need data a tiny network can learn in seconds."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    classes = rng.integers(0, 28, videos)
    labels = np.zeros((videos, 10, 29), np.float32)
    labels[:, :, 28] = 1
    for i in range(videos):
        start = rng.integers(0, 5)
        end = rng.integers(start + 2, 11)
        labels[i, start:end, 28] = 0
        labels[i, start:end, classes[i]] = 1
    seg = labels.argmax(-1)
    proto_a, proto_v = rng.normal(size=(29, 128)), rng.normal(size=(29, 512))
    audio = proto_a[seg] + rng.normal(size=(videos, 10, 128))
    visual = proto_v[seg][:, :, None, None, :] + rng.normal(size=(videos, 10, 7, 7, 512))
    right = labels.copy()
    order = rng.permutation(videos)
    n_train, n_val = int(videos * 0.8), int(videos * 0.1)
    test = order[n_train + n_val:]
    right[test[0]] = np.roll(right[test[0]], 1, axis=0)  # one corrected test video
    mil = np.zeros((videos, 29), np.float32)
    mil[np.arange(videos), classes] = 1
    noisy = 8
    noisy_labels = np.zeros((noisy, 29), np.float32)
    noisy_labels[:, 28] = 1
    arrays = {
        "audio_feature.h5": ("avadataset", audio), "visual_feature.h5": ("avadataset", visual),
        "labels.h5": ("avadataset", labels), "right_labels.h5": ("avadataset", right),
        "mil_labels.h5": ("avadataset", mil), "train_order.h5": ("order", order[:n_train]),
        "val_order.h5": ("order", order[n_train:n_train + n_val]), "test_order.h5": ("order", test),
        "labels_noisy.h5": ("avadataset", noisy_labels),
        "audio_feature_noisy.h5": ("avadataset", rng.normal(size=(noisy, 10, 128))),
        "visual_feature_noisy.h5": ("avadataset", rng.normal(size=(noisy, 10, 7, 7, 512))),
    }
    for name, (key, value) in arrays.items():
        with h5py.File(out / name, "w") as f:
            f[key] = value
    return out


# A DPNet small enough for runs of a few seconds: 96 training videos in 2 batches of 48.
TINY = ["--width", "16", "--blocks", "1", "--batch-size", "48", "--no-replicate", "--quiet"]
TINY_EPOCHS = 2
# An ablate grid's cells: 1 epoch, narrow and shallow (the grid's mechanics, not its accuracy, are
# under test), as options and as the config fields they set.
GRID_TINY_OPTIONS = ["--epochs", "1", "--width", "64", "--blocks", "1", "--batch-size", "32", "--quiet"]
GRID_TINY = {"train.epochs": 1, "model.width": 64, "model.blocks": 1, "train.batch_size": 32}
TINY_STEPS_PER_EPOCH = 2


def loss_hook(step: int, action):
    """A stand-in for engine.sel_loss that passes the loss of the `step`-th training step (from 1,
    over the whole run) through `action(loss) -> loss`: the fault tests' way to strike mid-run.
    Validation losses (logits without grad) are not counted."""
    from avel_dgl import engine

    calls, sel_loss = itertools.count(1), engine.sel_loss

    def hooked(logits, *args):
        loss = sel_loss(logits, *args)
        return action(loss) if logits.requires_grad and next(calls) == step else loss

    return hooked


def send_signal(signum: int):
    """A loss_hook action: send this process `signum`, keep the loss."""
    def action(loss):
        os.kill(os.getpid(), signum)
        return loss
    return action


def invoke(args: list[str]):
    """Run the avel-dgl CLI in this process; the result has exit_code, stdout and stderr."""
    from click.testing import CliRunner

    from cli.main import main

    return CliRunner().invoke(main, [str(a) for a in args], prog_name="avel-dgl")


# The fault table's findings (tests/test_faults.py), one dict per case run, summed up at the end of
# the session for docs/RELIABILITY.md.
FAULT_TALLY: list[dict] = []


def run_ranks(worker, args: tuple, world: int = 2, timeout: float = 300) -> None:
    """worker(rank, world, port, *args) in `world` spawned processes, with a free port for the
    process group's store; a group that hangs fails the test after `timeout` s instead of the suite."""
    import socket
    import time

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ranks = mp.spawn(worker, args=(world, port, *args), nprocs=world, join=False)
    deadline = time.monotonic() + timeout
    while not ranks.join(timeout=1):
        if time.monotonic() > deadline:
            for process in ranks.processes:
                process.kill()
            pytest.fail(f"the {world}-process group did not finish within {timeout:.0f} s")
