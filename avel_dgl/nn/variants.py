"""The layer stacks of Table 3 (perspective combinations) and the pieces they share with the
DPBlock: adapters that run a graph or stream layer on dense (B, T, D) features, the two options
beyond the paper (LayerNorm after a layer, a residual path), the parallel block, and the depth
that matches a single-perspective stack's size to the DPNet's (`matched_depth`).

Adapters and options are all `Wrapper`s: each holds one layer as `.layer`, so a stack's layer is
Normed(Residual(GraphLayer(RGCT))) or a part of that, and `innermost` is the one way to reach the
RGCT, RGAT or TCN inside. Layer makers (`rgct_layer`, ...) and stacks take eq 12's kernel and
hand it to the graph layers they build (nn/dpnet.build gives it).

Every Table 3 network is a DPNet (nn/dpnet.py: same stem, gate and classifier) whose blocks are
one of these stacks; `TABLE3` maps each variant name but the paper's own ('dpnet') to its stack.
Rows 4, 5 and 7 use the DPNet's own layers in another order and row 6 the same layers side by
side, so their sizes differ only through which layer takes the 512-d stem input.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from avel_dgl.config import ModelConfig
from avel_dgl.errors import ConfigError
from avel_dgl.format import VISUAL_DIM
from avel_dgl.nn.rgat import RGAT
from avel_dgl.nn.rgct import RGCT
from avel_dgl.nn.tcn import TCN


class Wrapper(nn.Module):
    """A module that runs one layer, `.layer`, with something around it: an adapter (GraphLayer,
    StreamLayer) or an option (Normed, Residual). The attribute's name is part of every
    checkpoint's tensor names ('blocks.0.rgct.layer.layer.query...'), so it stays `layer`."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer


def innermost(module: nn.Module) -> nn.Module:
    """The layer inside all of `module`'s wrappers: the RGCT, RGAT or TCN of a stack's layer, the
    ParallelLayer of a PPBlock; a module that is no Wrapper is its own innermost layer."""
    while isinstance(module, Wrapper):
        module = module.layer
    return module


class GraphLayer(Wrapper):
    """Runs a node-level graph layer (RGCT, RGAT) on dense (B, T, D) audio and visual features:
    row b * T + t of the flattened tensor is node b * T + t of the batch graph (graph.py)."""

    def forward(self, g, audio, visual):
        b, t, _ = audio.shape
        a, v = self.layer(g, audio.reshape(b * t, -1), visual.reshape(b * t, -1))
        return a.view(b, t, -1), v.view(b, t, -1)


class StreamLayer(Wrapper):
    """Runs a sequential-stream layer (TCN) on dense features; the graph is not used."""

    def forward(self, g, audio, visual):
        return self.layer(audio, visual)


class Normed(Wrapper):
    """Wraps a layer with a LayerNorm per modality on its output (the `norm: layer` option)."""

    def __init__(self, layer: nn.Module, dim: int):
        super().__init__(layer)
        self.audio_norm, self.visual_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, g, audio, visual):
        a, v = self.layer(g, audio, visual)
        return self.audio_norm(a), self.visual_norm(v)


class Residual(Wrapper):
    """Adds a layer's input to its output per modality (the `residual` option, beyond the paper)."""

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


def with_options(m: ModelConfig, layer: nn.Module, in_dim: int) -> nn.Module:
    """`layer` with the options beyond the paper that m switches on: a residual path (only where
    the layer keeps the width: the first layer changes it) and a LayerNorm on the output."""
    if m.residual and in_dim == m.width:
        layer = Residual(layer)
    return Normed(layer, m.width) if m.norm == "layer" else layer


# Heads of the RGAT baseline: the width must be a multiple of it.
RGAT_HEADS = 4


# A layer maker: (config, input width, eq 12's kernel) -> one layer of a stack, before the options.
Maker = Callable[[ModelConfig, int, str], nn.Module]
# A network's blocks: (config, eq 12's kernel) -> the DPNet's blocks (nn/dpnet.VARIANTS).
Stack = Callable[[ModelConfig, str], list[nn.Module]]


def rgct_layer(m: ModelConfig, in_dim: int, kernel: str) -> nn.Module:
    return GraphLayer(RGCT(in_dim, m.width, m.dropout, kernel=kernel, neighbour_norm=m.neighbour_norm))


def tcn_layer(m: ModelConfig, in_dim: int, kernel: str) -> nn.Module:
    """The TCN layer; it runs no graph, so `kernel` (every maker's argument) is unused."""
    return StreamLayer(TCN(in_dim, m.width, m.kernel_size))


def rgat_layer(m: ModelConfig, in_dim: int, kernel: str) -> nn.Module:
    if m.width % RGAT_HEADS:
        raise ConfigError("model.width", f"the rgat variant needs a multiple of its {RGAT_HEADS} heads, "
                                         f"found {m.width}")
    return GraphLayer(RGAT(in_dim, m.width, RGAT_HEADS, m.dropout, kernel=kernel))


def parallel_block(m: ModelConfig, in_dim: int, kernel: str) -> nn.Module:
    return ParallelLayer([rgct_layer(m, in_dim, kernel), tcn_layer(m, in_dim, kernel)])


def sequence(m: ModelConfig, makers: list[Maker], kernel: str) -> list[nn.Module]:
    """Instantiate layer makers in order, with the options; the first takes the stem width, the
    rest m.width."""
    layers, in_dim = [], VISUAL_DIM
    for make in makers:
        layers.append(with_options(m, make(m, in_dim, kernel), in_dim))
        in_dim = m.width
    return layers


# The kernel of layers built only to be counted or inspected on the meta device: nothing runs, and
# the kernel changes no parameter.
INSPECTION_KERNEL = "torch"


def backbone_params(m: ModelConfig, makers: list[Maker]) -> int:
    """Parameters of the layers `sequence(m, makers, kernel)` would build, under either kernel
    (counted on the meta device, so nothing is allocated)."""
    with torch.device("meta"):
        return sum(p.numel() for layer in sequence(m, makers, INSPECTION_KERNEL) for p in layer.parameters())


def matched_depth(m: ModelConfig, make: Maker, max_depth: int | None) -> int:
    """How many `make` layers (at most max_depth) bring a single-perspective backbone closest in
    parameters to the DPNet backbone of the same config (B DPBlocks: the layers of
    [rgct_layer, tcn_layer] * B): Table 3 compares similarly sized networks.

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


def dpnet_graph_second(m: ModelConfig, kernel: str) -> list[nn.Module]:
    """DPNet with the order inside each block swapped: TCN then RGCT (Table 3 row 7)."""
    return sequence(m, [tcn_layer, rgct_layer] * m.blocks, kernel)


def dpnet_parallel(m: ModelConfig, kernel: str) -> list[nn.Module]:
    """DPNet of B PPBlocks, RGCT and TCN in parallel inside each (Table 3 row 6). Same layers as
    the DPNet, so the same size up to the first TCN's wider input."""
    return sequence(m, [parallel_block] * m.blocks, kernel)


def tcn_then_rgct(m: ModelConfig, kernel: str) -> list[nn.Module]:
    """One pass of each perspective: B TCN layers, then B RGCT layers (Table 3 row 4). The
    DPNet's layers in another order, so similarly sized."""
    return sequence(m, [tcn_layer] * m.blocks + [rgct_layer] * m.blocks, kernel)


def rgct_then_tcn(m: ModelConfig, kernel: str) -> list[nn.Module]:
    """One pass of each perspective: B RGCT layers, then B TCN layers (Table 3 row 5)."""
    return sequence(m, [rgct_layer] * m.blocks + [tcn_layer] * m.blocks, kernel)


def rgct_only(m: ModelConfig, kernel: str) -> list[nn.Module]:
    """Graph perspective only: RGCT layers, as many as match the DPNet's size (Table 3 row 2)."""
    return sequence(m, [rgct_layer] * matched_depth(m, rgct_layer, 2 * m.blocks), kernel)


def rgat_only(m: ModelConfig, kernel: str) -> list[nn.Module]:
    """Graph perspective only, with RGAT instead of RGCT, depth matched to the DPNet's size
    (Table 3 row 1)."""
    return sequence(m, [rgat_layer] * matched_depth(m, rgat_layer, 2 * m.blocks), kernel)


def tcn_only(m: ModelConfig, kernel: str) -> list[nn.Module]:
    """Sequential stream perspective only: separate audio and visual TCN stacks, no graph, depth
    matched to the DPNet's size (Table 3 row 3)."""
    return sequence(m, [tcn_layer] * matched_depth(m, tcn_layer, 2 * m.blocks), kernel)


# Table 3 rows 1-7 in row order: name -> function(ModelConfig, kernel) -> the network's blocks.
# Row 8, the paper's DPNet, is nn/dpnet.py's; dpnet.VARIANTS lists all eight.
TABLE3: dict[str, Stack] = {
    "rgat": rgat_only,
    "rgct": rgct_only,
    "tcn": tcn_only,
    "tcn-rgct": tcn_then_rgct,
    "rgct-tcn": rgct_then_tcn,
    "dpnet-parallel": dpnet_parallel,
    "dpnet-graph-second": dpnet_graph_second,
}


def layer_kind(layer: nn.Module) -> str:
    """A layer's short name for tables: 'RGCT', 'RGAT', 'TCN', or 'RGCT||TCN' for a PPBlock."""
    core = innermost(layer)
    if isinstance(core, ParallelLayer):
        return "||".join(layer_kind(branch) for branch in core.branches)
    return type(core).__name__
