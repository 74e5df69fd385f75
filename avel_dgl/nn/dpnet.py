"""DPNet: the Dual Perspective Network of Rao, Khalil, Li, Dai and Lu, "Dual Perspective Network
for Audio-Visual Event Localization" (ECCV 2022), section 3.2, eqs 7-11.

    a = W_a audio (B,T,128 -> 512);  v = visual (B,T,512, the VGG19 map's global average);
        both standardised first with training-split statistics when `input_norm` is on
    (a, v) <- DPBlock(a, v), B times: RGCT (graph perspective) then TCN (stream)   eqs 7-8
    F = sigmoid(W_G [a; v])                                                        eq 9
    G = F * a + (1 - F) * v                                                        eq 10
    logits = W_seg G over 29 classes (28 events + background); softmax in the loss eq 11

This file reads top to bottom: DPBlock, DPNet, then `build`, which makes any network of the
project by name. The other networks of Table 3 are DPNets with other blocks (nn/variants.py);
the BiLSTM baseline is nn/baseline.py.
"""

from __future__ import annotations

import torch
from torch import nn

from avel_dgl import graph
from avel_dgl.config import Config, ModelConfig
from avel_dgl.errors import ConfigError
from avel_dgl.format import AUDIO_DIM, N_CLASSES, VISUAL_DIM
from avel_dgl.nn.baseline import BiLSTM
from avel_dgl.nn.init import init_swish
from avel_dgl.nn.inputs import InputNorm
from avel_dgl.nn.variants import (INSPECTION_KERNEL, TABLE3, GraphLayer, Stack, rgct_layer, tcn_layer,
                                  with_options)


class DPBlock(nn.Module):
    """One DPBlock (eq 7): the graph perspective, then the sequential stream perspective.

        (a, v) <- RGCT(G; a, v)    eqs 12-16, on the video graph: a segment's audio and visual
                                   nodes with their temporal and cross-modal neighbours (eqs 1-4)
        (a, v) <- TCN(a, v)        eqs 5-6, a temporal convolution per modality, then Swish

    Both map (B, T, D) audio and visual features to (B, T, width); the RGCT flattens them to the
    graph's nodes (GraphLayer). Options beyond the paper, off in the `paper` preset, wrap each of
    the two layers alike (`with_options`): a LayerNorm per modality on its output (norm='layer')
    and a residual path (residual=True, where the layer keeps the width). `kernel`: eq 12's, for
    the RGCT.
    """

    def __init__(self, m: ModelConfig, in_dim: int, kernel: str):
        super().__init__()
        self.rgct = with_options(m, rgct_layer(m, in_dim, kernel), in_dim)  # GraphLayer(RGCT(in_dim, width))
        self.tcn = with_options(m, tcn_layer(m, m.width, kernel), m.width)  # StreamLayer(TCN(width, width))

    def forward(self, g, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        audio, visual = self.rgct(g, audio, visual)
        return self.tcn(g, audio, visual)


def dpblocks(m: ModelConfig, kernel: str) -> list[nn.Module]:
    """B DPBlocks (eq 8): the first maps the stem's 512 features to the width, the rest keep it."""
    return [DPBlock(m, VISUAL_DIM if i == 0 else m.width, kernel) for i in range(m.blocks)]


class DPNet(nn.Module):
    """Stem, blocks, gate, classifier: forward(g, audio, visual) -> (B, T, 29) logits.

    audio (B, T, 128) and visual (B, T, 512) are dense per-segment features; g is the batch's
    graph (graph.batch_graph), used by the graph layers. `blocks`: the paper's B DPBlocks
    (`dpblocks`) or a Table 3 stack (nn/variants.py), made by the caller (`build`).
    """

    def __init__(self, m: ModelConfig, blocks: list[nn.Module]):
        super().__init__()
        # The blocks are made first (by the caller), then the stem, gate and classifier: the order
        # in which the parameters draw their initial values (kept from earlier versions, so a seed
        # gives the same network). Registration below keeps the stem first in state_dict and
        # parameters().
        self.audio_norm, self.visual_norm = InputNorm(AUDIO_DIM), InputNorm(VISUAL_DIM)
        self.audio_fc = nn.Linear(AUDIO_DIM, VISUAL_DIM)  # W_a: d_a -> d_v
        self.input_dropout = nn.Dropout(m.input_dropout)  # beyond the paper: 0 in `paper`
        self.blocks = nn.ModuleList(blocks)
        self.gate = nn.Linear(2 * m.width, m.width)  # W_G (eq 9)
        self.classifier_dropout = nn.Dropout(m.classifier_dropout)  # beyond the paper: 0 in `paper`
        self.classifier = nn.Linear(m.width, N_CLASSES)  # W_seg (eq 11)

    def forward(self, g, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        a = self.input_dropout(self.audio_fc(self.audio_norm(audio)))
        v = self.input_dropout(self.visual_norm(visual))
        for block in self.blocks:
            a, v = block(g, a, v)
        gate = torch.sigmoid(self.gate(torch.cat([a, v], dim=-1)))  # eq 9: F
        fused = gate * a + (1 - gate) * v  # eq 10: F weighs audio, 1 - F visual
        return self.classifier(self.classifier_dropout(fused))  # eq 11 (softmax in the loss)


# Every network by name, in Table 3's row order (the paper's DPNet, row 8, last):
# name -> function(ModelConfig, kernel) -> the DPNet's blocks.
VARIANTS: dict[str, Stack] = {**TABLE3, "dpnet": dpblocks}


def build(config: Config, kernel: str) -> nn.Module:
    """The network named by config.model.variant: a DPNet with that variant's blocks, or the
    BiLSTM baseline ('bilstm'). `kernel`: eq 12's kernel for every graph layer, 'dgl' or 'torch'
    (runtime.Runtime.kernel), handed to the layers as they are made; it changes no parameter, so a
    checkpoint loads under either."""
    m = config.model
    graph.check_kernel(kernel)
    if m.variant == "bilstm":
        return BiLSTM(m)
    if m.variant not in VARIANTS:
        names = ", ".join([*VARIANTS, "bilstm"])
        raise ConfigError("model.variant", f"expected one of {names}, found '{m.variant}'")
    net = DPNet(m, VARIANTS[m.variant](m, kernel))
    return init_swish(net) if m.init == "swish" else net  # nn/init.py


def perspective_layers(model: DPNet) -> list[nn.Module]:
    """The backbone's layers in order, each DPBlock giving its RGCT and its TCN (for tables)."""
    return [layer for block in model.blocks
            for layer in ((block.rgct, block.tcn) if isinstance(block, DPBlock) else (block,))]


def uses_graph(m: ModelConfig) -> bool:
    """Whether the variant m.variant has a graph layer (without one, Link changes nothing)."""
    with torch.device("meta"):
        blocks = VARIANTS[m.variant](m, INSPECTION_KERNEL)
    return any(isinstance(module, GraphLayer) for block in blocks for module in block.modules())
