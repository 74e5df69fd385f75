"""DPNet (section 3.2, eqs 7-11): input stem, a stack of perspective layers, gate and classifier.

    audio (B,T,128) --FC--> (B,T,512)   visual (B,T,512) (global average pooled, via the cache)
    backbone: B DPBlocks, each RGCT (graph perspective) then TCN (sequential stream perspective)
    gate  F = sigmoid(FC([a, v]))                     (eq 9)
    fuse  G = F * a + (1 - F) * v                      (eq 10)
    logits = FC(G) over 29 classes; softmax in the loss (eq 11)

Every network of the ablation study shares the stem, gate and classifier; variants differ only
in the list of layers `VARIANTS[name](config)` returns. All layers map (audio, visual) dense
(B, T, D) tensors to (B, T, width); graph layers flatten them to the graph's node order.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from avel_dgl.config import Config, ModelConfig
from avel_dgl.data.ave import AUDIO_DIM, N_CLASSES, VISUAL_DIM
from avel_dgl.errors import AvelError
from avel_dgl.nn.rgct import RGCT
from avel_dgl.nn.tcn import TCN


class GraphLayer(nn.Module):
    """Runs a node-level graph layer (RGCT) on dense (B, T, D) audio and visual features."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, g, audio, visual):
        b, t, _ = audio.shape
        a, v = self.layer(g, audio.reshape(b * t, -1), visual.reshape(b * t, -1))
        return a.view(b, t, -1), v.view(b, t, -1)


class StreamLayer(nn.Module):
    """Runs a sequential-stream layer (TCN) on dense features; the graph is not used."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, g, audio, visual):
        return self.layer(audio, visual)


class Normed(nn.Module):
    """Wraps a layer with a LayerNorm per modality on its output (the `norm: layer` option)."""

    def __init__(self, layer: nn.Module, dim: int):
        super().__init__()
        self.layer = layer
        self.audio_norm, self.visual_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, g, audio, visual):
        a, v = self.layer(g, audio, visual)
        return self.audio_norm(a), self.visual_norm(v)


class Residual(nn.Module):
    """Adds a layer's input to its output per modality (the `residual` option, beyond the paper)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, g, audio, visual):
        a, v = self.layer(g, audio, visual)
        return audio + a, visual + v


def rgct_layer(m: ModelConfig, in_dim: int) -> nn.Module:
    return GraphLayer(RGCT(in_dim, m.width, m.dropout))


def tcn_layer(m: ModelConfig, in_dim: int) -> nn.Module:
    return StreamLayer(TCN(in_dim, m.width, m.kernel_size))


def sequence(m: ModelConfig, makers: list[Callable[[ModelConfig, int], nn.Module]]) -> list[nn.Module]:
    """Instantiate layer makers in order; the first takes the stem width, the rest m.width."""
    layers, in_dim = [], VISUAL_DIM
    for make in makers:
        layer = make(m, in_dim)
        if m.residual and in_dim == m.width:  # the first layer changes the width: no identity path
            layer = Residual(layer)
        layers.append(Normed(layer, m.width) if m.norm == "layer" else layer)
        in_dim = m.width
    return layers


def dpnet_graph_first(m: ModelConfig) -> list[nn.Module]:
    """The paper's DPNet: each DPBlock is RGCT then TCN (eq 7), B blocks (eq 8)."""
    return sequence(m, [rgct_layer, tcn_layer] * m.blocks)


# name -> function(ModelConfig) -> list of layers. The ablation variants register here too.
VARIANTS: dict[str, Callable[[ModelConfig], list[nn.Module]]] = {
    "dpnet": dpnet_graph_first,
}


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


class AVELNet(nn.Module):
    """Stem -> backbone layers -> gate -> classifier. forward(g, audio, visual) -> (B, T, 29) logits."""

    def __init__(self, m: ModelConfig, layers: list[nn.Module]):
        super().__init__()
        self.audio_norm, self.visual_norm = InputNorm(AUDIO_DIM), InputNorm(VISUAL_DIM)
        self.audio_fc = nn.Linear(AUDIO_DIM, VISUAL_DIM)  # W_a: d_a -> d_v
        self.input_dropout = nn.Dropout(m.input_dropout)
        self.layers = nn.ModuleList(layers)
        self.gate = nn.Linear(2 * m.width, m.width)  # W_G (eq 9)
        self.classifier_dropout = nn.Dropout(m.classifier_dropout)
        self.classifier = nn.Linear(m.width, N_CLASSES)  # W_seg (eq 11)

    def forward(self, g, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        a = self.input_dropout(self.audio_fc(self.audio_norm(audio)))
        v = self.input_dropout(self.visual_norm(visual))
        for layer in self.layers:
            a, v = layer(g, a, v)
        gate = torch.sigmoid(self.gate(torch.cat([a, v], dim=-1)))  # eq 9
        fused = gate * a + (1 - gate) * v  # eq 10
        return self.classifier(self.classifier_dropout(fused))  # eq 11 (softmax in the loss)


def build(config: Config) -> nn.Module:
    """The network named by config.model.variant."""
    from avel_dgl.nn.baseline import BiLSTM

    m = config.model
    if m.variant == "bilstm":
        return BiLSTM(m)
    if m.variant not in VARIANTS:
        names = ", ".join([*VARIANTS, "bilstm"])
        raise AvelError(f"--variant: expected one of {names}, found '{m.variant}'")
    return AVELNet(m, VARIANTS[m.variant](m))
