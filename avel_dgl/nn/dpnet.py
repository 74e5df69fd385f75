"""DPNet (section 3.2, eqs 7-11): input stem, a stack of perspective layers, gate and classifier.

    audio (B,T,128) --FC--> (B,T,512)   visual (B,T,512) (global average pooled, via the cache)
    backbone: B DPBlocks, each RGCT (graph perspective) then TCN (sequential stream perspective)
    gate  F = sigmoid(FC([a, v]))                     (eq 9)
    fuse  G = F * a + (1 - F) * v                      (eq 10)
    logits = FC(G) over 29 classes; softmax in the loss (eq 11)

Every network of the ablation study (Table 3: RGAT, RGCT or TCN only, one pass of each
perspective in either order, parallel blocks, either order inside a block) shares the stem, gate
and classifier; variants differ only in the list of layers `VARIANTS[name](config)` returns. All
layers map (audio, visual) dense (B, T, D) tensors to (B, T, width); graph layers flatten them to
the graph's node order. Single-perspective variants take as many layers, up to the DPNet's
count, as bring their parameter count closest to the DPNet's (`matched_depth`), since Table 3
compares similarly sized networks.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from avel_dgl.config import Config, ModelConfig
from avel_dgl.format import AUDIO_DIM, N_CLASSES, VISUAL_DIM
from avel_dgl.errors import AvelError
from avel_dgl.nn.rgat import RGAT
from avel_dgl.nn.rgct import RGCT
from avel_dgl.nn.tcn import TCN


class GraphLayer(nn.Module):
    """Runs a node-level graph layer (RGCT, RGAT) on dense (B, T, D) audio and visual features."""

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


class ParallelLayer(nn.Module):
    """The Parallel Perspective Block (PPBlock, Table 3 row 6), split-transform-merge: every branch
    (RGCT and TCN) takes the block's input, and their outputs are averaged per modality."""

    def __init__(self, branches: list[nn.Module]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, g, audio, visual):
        outs = [branch(g, audio, visual) for branch in self.branches]
        return (torch.stack([a for a, _ in outs]).mean(0), torch.stack([v for _, v in outs]).mean(0))


# Heads of the RGAT baseline: the width must be a multiple of it.
RGAT_HEADS = 4


def rgct_layer(m: ModelConfig, in_dim: int) -> nn.Module:
    return GraphLayer(RGCT(in_dim, m.width, m.dropout))


def tcn_layer(m: ModelConfig, in_dim: int) -> nn.Module:
    return StreamLayer(TCN(in_dim, m.width, m.kernel_size))


def rgat_layer(m: ModelConfig, in_dim: int) -> nn.Module:
    if m.width % RGAT_HEADS:
        raise AvelError(f"--width: the rgat variant needs a multiple of its {RGAT_HEADS} heads, found {m.width}")
    return GraphLayer(RGAT(in_dim, m.width, RGAT_HEADS, m.dropout))


def parallel_block(m: ModelConfig, in_dim: int) -> nn.Module:
    return ParallelLayer([rgct_layer(m, in_dim), tcn_layer(m, in_dim)])


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


def backbone_params(m: ModelConfig, makers: list[Callable[[ModelConfig, int], nn.Module]]) -> int:
    """Parameters of the layers `sequence(m, makers)` would build (counted on the meta device,
    so nothing is allocated)."""
    with torch.device("meta"):
        return sum(p.numel() for layer in sequence(m, makers) for p in layer.parameters())


def matched_depth(m: ModelConfig, make: Callable[[ModelConfig, int], nn.Module], max_depth: int | None) -> int:
    """How many `make` layers (at most max_depth) bring a single-perspective backbone closest in
    parameters to the DPNet backbone of the same config: Table 3 compares similarly sized networks.

    The variants cap it at the DPNet's 2 * m.blocks layers. The cap matters for the cheap layers
    (TCN, RGAT): matching their parameters exactly takes 12-17 layers, and such deep stacks without
    residual paths barely train (docs/RESULTS.md, scripts/depth_check.py), which would measure depth
    instead of perspective. Capped, they keep the DPNet's depth with fewer parameters;
    `avel-dgl ablate --dry-run` reports every count.
    """
    target = backbone_params(m, [rgct_layer, tcn_layer] * m.blocks)
    first = backbone_params(m, [make])
    later = backbone_params(m, [make, make]) - first
    depth = 1 + max(0, round((target - first) / later))
    return depth if max_depth is None else min(max_depth, depth)


def dpnet_graph_first(m: ModelConfig) -> list[nn.Module]:
    """The paper's DPNet: each DPBlock is RGCT then TCN (eq 7), B blocks (eq 8). Table 3 row 8."""
    return sequence(m, [rgct_layer, tcn_layer] * m.blocks)


def dpnet_graph_second(m: ModelConfig) -> list[nn.Module]:
    """DPNet with the order inside each block swapped: TCN then RGCT (Table 3 row 7)."""
    return sequence(m, [tcn_layer, rgct_layer] * m.blocks)


def dpnet_parallel(m: ModelConfig) -> list[nn.Module]:
    """DPNet of B PPBlocks, RGCT and TCN in parallel inside each (Table 3 row 6). Same layers as
    the DPNet, so the same size up to the first TCN's wider input."""
    return sequence(m, [parallel_block] * m.blocks)


def tcn_then_rgct(m: ModelConfig) -> list[nn.Module]:
    """One pass of each perspective: B TCN layers, then B RGCT layers (Table 3 row 4). The
    DPNet's layers in another order, so similarly sized."""
    return sequence(m, [tcn_layer] * m.blocks + [rgct_layer] * m.blocks)


def rgct_then_tcn(m: ModelConfig) -> list[nn.Module]:
    """One pass of each perspective: B RGCT layers, then B TCN layers (Table 3 row 5)."""
    return sequence(m, [rgct_layer] * m.blocks + [tcn_layer] * m.blocks)


def rgct_only(m: ModelConfig) -> list[nn.Module]:
    """Graph perspective only: RGCT layers, as many as match the DPNet's size (Table 3 row 2)."""
    return sequence(m, [rgct_layer] * matched_depth(m, rgct_layer, 2 * m.blocks))


def rgat_only(m: ModelConfig) -> list[nn.Module]:
    """Graph perspective only, with RGAT instead of RGCT, depth matched to the DPNet's size
    (Table 3 row 1)."""
    return sequence(m, [rgat_layer] * matched_depth(m, rgat_layer, 2 * m.blocks))


def tcn_only(m: ModelConfig) -> list[nn.Module]:
    """Sequential stream perspective only: separate audio and visual TCN stacks, no graph, depth
    matched to the DPNet's size (Table 3 row 3)."""
    return sequence(m, [tcn_layer] * matched_depth(m, tcn_layer, 2 * m.blocks))


# name -> function(ModelConfig) -> list of layers, in Table 3's row order. Every variant shares
# the stem, the gate (eqs 9-10) and the classifier (eq 11) of AVELNet.
VARIANTS: dict[str, Callable[[ModelConfig], list[nn.Module]]] = {
    "rgat": rgat_only,
    "rgct": rgct_only,
    "tcn": tcn_only,
    "tcn-rgct": tcn_then_rgct,
    "rgct-tcn": rgct_then_tcn,
    "dpnet-parallel": dpnet_parallel,
    "dpnet-graph-second": dpnet_graph_second,
    "dpnet": dpnet_graph_first,
}


def layer_kind(layer: nn.Module) -> str:
    """A layer's short name for tables: 'RGCT', 'RGAT', 'TCN', or 'RGCT||TCN' for a PPBlock."""
    if isinstance(layer, (Normed, Residual)):
        return layer_kind(layer.layer)
    if isinstance(layer, ParallelLayer):
        return "||".join(layer_kind(branch) for branch in layer.branches)
    return type(layer.layer).__name__


def uses_graph(m: ModelConfig) -> bool:
    """Whether the variant m.variant has a graph layer (without one, Link changes nothing)."""
    with torch.device("meta"):
        layers = VARIANTS[m.variant](m)
    return any(isinstance(module, GraphLayer) for layer in layers for module in layer.modules())


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
