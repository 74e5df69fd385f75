"""The sequential-stream layer (eqs 5-6): one temporal convolution per modality, then Swish.

Each modality has its own weights (W_b^A, W_b^V). The convolution is non-causal with 'same'
padding (k // 2 zeros each side), so T segments in give T segments out: localization labels
every segment of a finished video, so future segments are fair context.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from avel_dgl.nn.init import SWISH_GAIN, scaled_normal_


class TCN(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 3):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd to keep the length, got {kernel_size}")
        self.audio = nn.Conv1d(in_dim, out_dim, kernel_size, padding=kernel_size // 2)
        self.visual = nn.Conv1d(in_dim, out_dim, kernel_size, padding=kernel_size // 2)

    def init_swish(self) -> None:
        """The `swish` initialisation (nn/init.py): each modality's convolution feeds Swish (eq 5);
        its fan-in is in_dim times the kernel size."""
        for conv in (self.audio, self.visual):
            scaled_normal_(conv.weight, conv.bias, conv.in_channels * conv.kernel_size[0], SWISH_GAIN)

    @staticmethod
    def _stream(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
        # (B, T, D) -> (B, D, T) for Conv1d and back
        return F.silu(conv(x.transpose(1, 2))).transpose(1, 2)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """audio, visual: (B, T, in_dim) -> (B, T, out_dim) each."""
        return self._stream(self.audio, audio), self._stream(self.visual, visual)
