"""Input standardisation shared by every network (DPNet's stem and the BiLSTM baseline)."""

from __future__ import annotations

import torch
from torch import nn


class InputNorm(nn.Module):
    """Per-feature standardisation with statistics of the training split, kept in the checkpoint.
    Identity until `set_stats` is called (and always, when the `input_norm` option is 'none')."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def set_stats(self, x: torch.Tensor) -> None:
        flat = x.reshape(-1, x.shape[-1]).double()
        self.mean.copy_(flat.mean(0))
        self.std.copy_(flat.std(0).clamp_min(1e-6))

    def forward(self, x):
        return (x - self.mean) / self.std
