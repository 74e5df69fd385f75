"""Segment accuracy: the global accuracy every AVEL paper reports, a per-class table, and the
confusion matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from avel_dgl.format import CLASS_NAMES, N_CLASSES, PER_CLASS_COLUMNS


def global_accuracy(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of segments whose predicted class equals the label, over all segments."""
    return (pred == target).float().mean().item()


def per_class_table(pred: torch.Tensor, target: torch.Tensor) -> pd.DataFrame:
    """One row per class present in `target`: segments, correct, accuracy (recall of that class)."""
    pred, target = pred.reshape(-1), target.reshape(-1)
    segments = torch.bincount(target, minlength=N_CLASSES)
    correct = torch.bincount(target[pred == target], minlength=N_CLASSES)
    rows = [
        {"class": c, "name": CLASS_NAMES[c], "segments": int(segments[c]), "correct": int(correct[c]),
         "accuracy": float(correct[c]) / int(segments[c])}
        for c in range(N_CLASSES) if segments[c] > 0
    ]
    return pd.DataFrame(rows, columns=PER_CLASS_COLUMNS)


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """(29, 29) segment counts: entry [i, j] counts segments labelled i and predicted j."""
    pred, target = pred.reshape(-1), target.reshape(-1)
    counts = torch.bincount(target * N_CLASSES + pred, minlength=N_CLASSES * N_CLASSES)
    return counts.reshape(N_CLASSES, N_CLASSES).numpy()
