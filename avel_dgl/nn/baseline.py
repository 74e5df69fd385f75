"""The baseline a user tries first: a bidirectional LSTM over [audio, pooled visual] per segment.

Trained by the same loop, losses and budget as DPNet, so accuracy comparisons are like for like.
"""

from __future__ import annotations

import torch
from torch import nn

from avel_dgl.config import ModelConfig
from avel_dgl.format import AUDIO_DIM, N_CLASSES, VISUAL_DIM
from avel_dgl.nn.inputs import InputNorm


class BiLSTM(nn.Module):
    def __init__(self, m: ModelConfig):
        super().__init__()
        self.audio_norm, self.visual_norm = InputNorm(AUDIO_DIM), InputNorm(VISUAL_DIM)
        self.input_dropout = nn.Dropout(m.input_dropout)
        self.lstm = nn.LSTM(AUDIO_DIM + VISUAL_DIM, m.width // 2, batch_first=True, bidirectional=True)
        self.classifier_dropout = nn.Dropout(m.classifier_dropout)
        self.classifier = nn.Linear(2 * (m.width // 2), N_CLASSES)

    def forward(self, g, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """g is unused (the signature matches the graph networks). (B, T, .) -> (B, T, 29) logits."""
        x = self.input_dropout(torch.cat([self.audio_norm(audio), self.visual_norm(visual)], dim=-1))
        h, _ = self.lstm(x)
        return self.classifier(self.classifier_dropout(h))
