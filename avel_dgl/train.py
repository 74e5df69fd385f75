"""A training run: data, model, optimizer and schedule, the epoch loop, validation-selected
checkpoints and the final test accuracy on O-AVE and C-AVE. Also evaluating a checkpoint.

Run directory layout:
    config.json         the resolved config
    metrics.csv         one row per epoch: lr, train loss/acc, val acc/loss (the task's loss), seconds
    best.pt / last.pt   the checkpoint with the best validation accuracy / of the last epoch
    results.json        best epoch, its val accuracy, its test accuracy on o-ave and c-ave, the data folder
    per_class_<set>.csv per-class test accuracy of best.pt on each label set
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import shutil
import time
from pathlib import Path

import dgl
import numpy as np
import torch
from tqdm import tqdm

from avel_dgl import engine
from avel_dgl.checkpoint import load_model, save_checkpoint
from avel_dgl.config import Config, validate
from avel_dgl.data.ave import LABEL_SETS, SplitData, load_noisy, load_split
from avel_dgl.errors import AvelError
from avel_dgl.metrics import per_class_table
from avel_dgl.nn.dpnet import build

METRIC_FIELDS = ["epoch", "lr", "train_loss", "train_acc", "val_acc", "val_loss", "seconds"]


def set_seed(seed: int) -> None:
    """Fix python, numpy, torch and DGL randomness."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    dgl.seed(seed)


def set_threads(processes: int = 1) -> None:
    """Cores divided by processes: oversubscribing the cores makes torch many times slower."""
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // processes))


def lr_multiplier(epoch: float, cycle_epochs: int, floors: tuple[tuple[int, float], ...]) -> float:
    """Cosine annealing with warm restarts: within each cycle the multiplier falls from 1 to the
    floor in force (the last (start_epoch, floor) with start_epoch <= epoch), then restarts."""
    floor = [f for start, f in floors if start <= epoch][-1]
    phase = (epoch % cycle_epochs) / cycle_epochs
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * phase))


def make_optimizer(model: torch.nn.Module, config: Config) -> torch.optim.Optimizer:
    t = config.train
    params = model.parameters()
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay, nesterov=True)
    raise AvelError(f"--optimizer: expected one of adam, adamw, sgd, found '{t.optimizer}'")


def make_scheduler(optimizer: torch.optim.Optimizer, config: Config, steps_per_epoch: int):
    t = config.train
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step / steps_per_epoch, t.cycle_epochs, t.lr_floors))


def training_set(config: Config, data_dir: Path) -> SplitData:
    """SEL: the train split. WSEL: the train split plus the background-only noisy videos (their
    video label is background), as in AVEL's weakly supervised setting."""
    train = load_split(data_dir, "train")
    if config.train.task == "wsel":
        train = SplitData.concat([train, load_noisy(data_dir)])
    return train


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise AvelError(f"--out: {out_dir} already holds a run; choose another folder or pass --overwrite")
        shutil.rmtree(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AvelError(f"--out: cannot create {out_dir} ({e.strerror})") from None


def train_run(config: Config, data_dir: str | Path, out_dir: str | Path, overwrite: bool = False,
              progress: bool = True) -> dict:
    """Train, keep the best checkpoint by validation accuracy, then test it on o-ave and c-ave."""
    validate(config)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    t = config.train
    set_seed(t.seed)
    train, val = training_set(config, data_dir), load_split(data_dir, "val")
    prepare_out_dir(out_dir, overwrite)
    (out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))

    model = build(config)
    if t.input_norm == "standardize":
        model.audio_norm.set_stats(train.audio)
        model.visual_norm.set_stats(train.visual)
    elif t.input_norm != "none":
        raise AvelError(f"--input-norm: expected none or standardize, found '{t.input_norm}'")
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, math.ceil(len(train) / t.batch_size))
    replicas = None
    if t.replicate:
        from avel_dgl.data.subevents import replica_fn

        replicas = replica_fn(train, data_dir, seed=t.seed)
    generator = torch.Generator().manual_seed(t.seed)

    best_acc, best_epoch = -1.0, -1
    with open(out_dir / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, METRIC_FIELDS)
        writer.writeheader()
        bar = tqdm(range(1, t.epochs + 1), desc=f"{config.model.variant} {t.task}", disable=not progress)
        for epoch in bar:
            start = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            stats = engine.train_one_epoch(model, train, optimizer, scheduler, t, generator, replicas, progress)
            val_stats = engine.evaluate(model, val, t.batch_size, task=t.task)
            val_acc = val_stats["acc"]
            writer.writerow({"epoch": epoch, "lr": f"{lr:.6g}", "train_loss": f"{stats['loss']:.6f}",
                             "train_acc": f"{stats['acc']:.6f}", "val_acc": f"{val_acc:.6f}",
                             "val_loss": f"{val_stats['loss']:.6f}",
                             "seconds": f"{time.perf_counter() - start:.2f}"})
            f.flush()
            if val_acc > best_acc:
                best_acc, best_epoch = val_acc, epoch
                save_checkpoint(out_dir / "best.pt", model, config, epoch=epoch, val_acc=val_acc)
            save_checkpoint(out_dir / "last.pt", model, config, epoch=epoch, val_acc=val_acc)
            bar.set_postfix(loss=f"{stats['loss']:.3f}", train=f"{stats['acc']:.3f}", val=f"{val_acc:.3f}",
                            best=f"{best_acc:.3f}@{best_epoch}")

    # The data folder is recorded so `avel-dgl report` can predict on its test split later.
    results = {"seed": t.seed, "best_epoch": best_epoch, "val_acc": best_acc, "data": str(data_dir.resolve())}
    for label_set in LABEL_SETS:
        results[f"test_acc_{label_set}"] = evaluate_checkpoint(out_dir / "best.pt", data_dir, label_set,
                                                               out_dir / f"per_class_{label_set}.csv")["acc"]
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results


def evaluate_checkpoint(checkpoint: str | Path, data_dir: str | Path, label_set: str,
                        per_class_csv: str | Path | None = None) -> dict:
    """Test-split global segment accuracy of a checkpoint on a label set ('o-ave' or 'c-ave'),
    and the per-class table (written to `per_class_csv` if given)."""
    model, config, _ = load_model(checkpoint)
    test = load_split(data_dir, "test", label_set)
    out = engine.evaluate(model, test, config.train.batch_size)
    table = per_class_table(out["pred"], test.segment_labels)
    if per_class_csv is not None:
        table.to_csv(per_class_csv, index=False)
    return {"acc": out["acc"], "per_class": table, "videos": len(test), "label_set": label_set}
