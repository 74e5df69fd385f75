"""One epoch of training, evaluation (of a model in memory, or of a checkpoint file on a data
folder's test split), and the SEL / WSEL losses. Works on dense tensors; the graph of each batch
comes from `graph.batch_graph` (cached per batch shape). No training-run code: inference commands
use this module without importing train.py.

Each batch is moved to the model's device once; within a step nothing comes back to the host
but the finite-loss flag. Under torch.distributed each rank trains on its share of every global
batch and evaluates its share of the rows (see distributed.py); metrics are combined across
ranks, so every rank returns the same numbers. Shares and collectives follow the joined process
group (distributed.rank(), world_size()), whose ranks are the Runtime's the caller built its run
with (runtime.py reads them from torchrun); outside a group, the whole batch on one process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from tqdm import tqdm

from avel_dgl import distributed, graph
from avel_dgl.checkpoint import checkpoint_config, load_weights, read_checkpoint
from avel_dgl.config import Config, TrainConfig
from avel_dgl.data.dataset import SplitData, load_split
from avel_dgl.metrics import global_accuracy, per_class_table
from avel_dgl.nn.dpnet import build
from avel_dgl.progress import bar
from avel_dgl.runtime import Runtime

# (batch row positions in the training SplitData) -> (audio, visual) of one replica per video,
# with the same segment labels as the originals. See data/subevents.py.
ReplicaFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class NonFiniteLoss(FloatingPointError):
    """A training step's loss was NaN or Inf. `step` counts from 1 within the epoch."""

    def __init__(self, step: int, value: float):
        super().__init__(f"non-finite loss {value} at step {step}")
        self.step, self.value = step, value


def sel_loss(logits: torch.Tensor, segment_labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over every segment: logits (B, T, C), labels (B, T)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), segment_labels.reshape(-1))


def mil_video_probs(logits: torch.Tensor) -> torch.Tensor:
    """MIL pooling for WSEL: the video's class distribution is the mean of its segments' softmax
    distributions, (B, T, C) -> (B, C). Mean (not max) pooling keeps a gradient on every segment."""
    return torch.softmax(logits, dim=-1).mean(dim=1)


def wsel_loss(logits: torch.Tensor, video_labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between the MIL-pooled video prediction and the video label (B,)."""
    return F.nll_loss(torch.log(mil_video_probs(logits).clamp_min(1e-8)), video_labels)


def task_loss(task: str, logits: torch.Tensor, segment_labels: torch.Tensor,
              video_labels: torch.Tensor) -> torch.Tensor:
    """The training objective of `task`: SEL on segment labels, WSEL on video labels."""
    return sel_loss(logits, segment_labels) if task == "sel" else wsel_loss(logits, video_labels)


def batch_indices(n: int, batch_size: int, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    """Row positions of each batch; shuffled when a generator is given. The last batch may be short."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    yield from order.split(batch_size)


def train_one_epoch(
    model: torch.nn.Module,
    data: SplitData,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    cfg: TrainConfig,
    generator: torch.Generator,
    replicas: ReplicaFn | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """One pass over `data` in shuffled batches. For SEL with replicas, each batch of B videos is
    extended by their B replicas (2B videos, labels repeated), joined by link edges if cfg.link."""
    model.train()
    device = next(model.parameters()).device
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    segments, steps = 0, 0
    batches = distributed.shard(batch_indices(len(data), cfg.batch_size, generator))
    bar = tqdm(batches, leave=False, disable=not progress, desc="train")
    for index, scale in bar:
        audio, visual = data.audio[index], data.visual[index]
        seg_labels, video_labels = data.segment_labels[index], data.video_labels[index]
        if replicas is not None:
            rep_audio, rep_visual = replicas(index)
            audio, visual = torch.cat([audio, rep_audio]), torch.cat([visual, rep_visual])
            seg_labels = torch.cat([seg_labels, seg_labels])
        audio, visual, seg_labels, video_labels = (x.to(device) for x in (audio, visual, seg_labels, video_labels))
        g = graph.batch_graph(audio.shape[0], linked=replicas is not None and cfg.link)
        logits = model(g, audio, visual)
        loss = task_loss(cfg.task, logits, seg_labels, video_labels)
        if not distributed.all_true(torch.isfinite(loss)):  # every rank stops at the same step
            mean = distributed.all_reduce_sum(loss.detach()) / distributed.world_size()  # NaN/Inf if any is
            raise NonFiniteLoss(steps + 1, mean.item())
        optimizer.zero_grad(set_to_none=True)
        # scale is 1 in a one-process run; with K ranks it makes DDP's gradient average the
        # gradient of the global batch's mean loss (distributed.shard).
        (loss * scale).backward()
        optimizer.step()
        scheduler.step()
        steps += 1
        total_loss += loss.detach() * scale
        correct += (logits.argmax(-1) == seg_labels).sum()
        segments += seg_labels.numel()
    # The mean over steps of the global batch loss, and accuracy over every rank's segments.
    loss_sum, correct, segments = distributed.all_reduce_sum(
        torch.stack([total_loss, correct.double(), torch.tensor(float(segments), device=device)])).tolist()
    # In WSEL the segment accuracy uses labels the model never trained on; it is logged for insight.
    return {"loss": loss_sum / distributed.world_size() / max(steps, 1), "acc": correct / max(segments, 1)}


@torch.no_grad()
def feature_logits(model: torch.nn.Module, audio: torch.Tensor, visual: torch.Tensor,
                   batch_size: int) -> torch.Tensor:
    """(N, T, C) logits for videos given by audio (N, T, 128) and pooled visual (N, T, 512)
    features, in order, with the model in eval mode, on the model's device. Needs no labels (new
    videos); any T (localize runs long videos whole)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    batches = batch_indices(audio.shape[0], batch_size, None)
    for index in bar(batches, total=-(-audio.shape[0] // batch_size), desc="predict", unit="batch"):
        g = graph.batch_graph(len(index), t=audio.shape[1])
        out.append(model(g, audio[index].to(device), visual[index].to(device)))
    return torch.cat(out) if out else torch.empty(0, audio.shape[1], 0, device=device)


def predict_logits(model: torch.nn.Module, data: SplitData, batch_size: int) -> torch.Tensor:
    """(N, T, C) logits for every video of `data`, in order, with the model in eval mode."""
    return feature_logits(model, data.audio, data.visual, batch_size)


def evaluate(model: torch.nn.Module, data: SplitData, batch_size: int, task: str | None = None) -> dict:
    """Global segment accuracy over `data` plus the predictions (N, T) on the CPU, for tables and
    reports; with `task`, also that task's loss (the validation loss curve of a run).

    Under torch.distributed each rank predicts its share of the rows; the predictions are
    gathered and the loss summed across ranks, so every rank returns the numbers of all rows."""
    rows = distributed.shard_rows(len(data))
    part = data.subset(rows)
    logits = predict_logits(model, part, batch_size)
    device = logits.device
    if len(rows) == 0:  # fewer rows than ranks: this rank has none, but joins the collectives
        logits = torch.zeros(0, data.audio.shape[1], 1, device=device)
    pred = distributed.gather_rows(logits.argmax(-1), len(data)).cpu()
    out = {"acc": global_accuracy(pred, data.segment_labels), "pred": pred}
    if task is not None:
        # Both tasks' losses are means over rows (of T segments each): sum rows' shares, divide once
        # (in float64, so that one process gets exactly its mean back).
        loss = task_loss(task, logits, part.segment_labels.to(device), part.video_labels.to(device)).double() \
            * len(rows) if len(rows) else torch.zeros((), dtype=torch.float64, device=device)
        out["loss"] = distributed.all_reduce_sum(loss).item() / len(data)
    return out


def load_model(path: str | Path, runtime: Runtime) -> tuple[torch.nn.Module, Config, dict]:
    """The model of a checkpoint, built from the config stored with it for `runtime` (its eq 12
    kernel, on its device), in eval mode."""
    ckpt = read_checkpoint(path)
    config = checkpoint_config(ckpt, path)
    model = build(config, runtime.kernel)
    load_weights(model, ckpt["model"], path, config)
    model.to(runtime.device).eval()
    return model, config, ckpt


def evaluate_checkpoint(checkpoint: str | Path, data_dir: str | Path, label_set: str, runtime: Runtime) -> dict:
    """Test-split global segment accuracy of a checkpoint on a label set ('o-ave' or 'c-ave'),
    run under `runtime`, and the per-class table."""
    model, config, _ = load_model(checkpoint, runtime)
    test = load_split(data_dir, "test", label_set)
    out = evaluate(model, test, config.train.batch_size)
    table = per_class_table(out["pred"], test.segment_labels)
    return {"acc": out["acc"], "per_class": table, "videos": len(test), "label_set": label_set}
