"""One epoch of training, evaluation, and the SEL / WSEL losses. Works on dense tensors; the
graph of each batch comes from `graph.batch_graph` (cached per batch shape)."""

from __future__ import annotations

import math
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from tqdm import tqdm

from avel_dgl import graph
from avel_dgl.config import TrainConfig
from avel_dgl.data.ave import SplitData
from avel_dgl.metrics import global_accuracy

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
    total_loss, correct, segments, steps = 0.0, 0, 0, 0
    batches = batch_indices(len(data), cfg.batch_size, generator)
    bar = tqdm(batches, total=math.ceil(len(data) / cfg.batch_size), leave=False, disable=not progress,
               desc="train")
    for index in bar:
        audio, visual = data.audio[index], data.visual[index]
        seg_labels, video_labels = data.segment_labels[index], data.video_labels[index]
        if replicas is not None:
            rep_audio, rep_visual = replicas(index)
            audio, visual = torch.cat([audio, rep_audio]), torch.cat([visual, rep_visual])
            seg_labels = torch.cat([seg_labels, seg_labels])
        g = graph.batch_graph(audio.shape[0], linked=replicas is not None and cfg.link)
        logits = model(g, audio, visual)
        loss = task_loss(cfg.task, logits, seg_labels, video_labels)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(steps + 1, loss.item())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        steps += 1
        total_loss += loss.item()
        correct += (logits.argmax(-1) == seg_labels).sum().item()
        segments += seg_labels.numel()
        bar.set_postfix(loss=f"{total_loss / steps:.4f}")
    # In WSEL the segment accuracy uses labels the model never trained on; it is logged for insight.
    return {"loss": total_loss / max(steps, 1), "acc": correct / max(segments, 1)}


@torch.no_grad()
def feature_logits(model: torch.nn.Module, audio: torch.Tensor, visual: torch.Tensor,
                   batch_size: int) -> torch.Tensor:
    """(N, T, C) logits for videos given by audio (N, T, 128) and pooled visual (N, T, 512)
    features, in order, with the model in eval mode. Needs no labels (new videos)."""
    model.eval()
    out = []
    for index in batch_indices(audio.shape[0], batch_size, None):
        g = graph.batch_graph(len(index))
        out.append(model(g, audio[index], visual[index]))
    return torch.cat(out) if out else torch.empty(0, audio.shape[1], 0)


def predict_logits(model: torch.nn.Module, data: SplitData, batch_size: int) -> torch.Tensor:
    """(N, T, C) logits for every video of `data`, in order, with the model in eval mode."""
    return feature_logits(model, data.audio, data.visual, batch_size)


def evaluate(model: torch.nn.Module, data: SplitData, batch_size: int, task: str | None = None) -> dict:
    """Global segment accuracy over `data` plus the predictions, for tables and reports; with
    `task`, also that task's loss (the validation loss curve of a run)."""
    logits = predict_logits(model, data, batch_size)
    pred = logits.argmax(-1)
    out = {"acc": global_accuracy(pred, data.segment_labels), "pred": pred}
    if task is not None:
        out["loss"] = task_loss(task, logits, data.segment_labels, data.video_labels).item()
    return out
