"""Weight initialisation that keeps the signal's scale through a deep stack of Swish layers
(the `model.init: swish` option, in the `paper` preset; `torch` keeps PyTorch's per-layer
defaults, as `small` does: its LayerNorms keep the scale, docs/MODEL.md).

Why: PyTorch's default for nn.Linear and nn.Conv1d draws W ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
so Var(W x) = Var(x) / 3, and Swish near 0 halves its input (silu(x) ~ x / 2). A DPNet block
has three such stages on the main path (eqs 15, 16 and the TCN's eq 5), so at the paper's size
(4 blocks, no normalisation) the features shrink by about 150x: the logits of every segment
become nearly equal, the gradients reaching the first blocks fall to 1e-9..1e-13, below Adam's
epsilon (1e-8), and the network sits on the start plateau predicting one class
(docs/RESULTS.md, "Paper size").

The rule (He et al.'s derivation applied to Swish, with zero biases): a weight feeding Swish
has std = g / sqrt(fan_in) with g = 1 / sqrt(E[silu(x)^2]) = 1.677 for x ~ N(0, 1), so a
unit-variance input stays unit-variance through Linear + Swish. Where a sum of k unit-scale
terms is involved, the gain is divided by sqrt(k): eq 16's W_2 takes n_hat + the attended
aggregate (k = 2), and RGAT's Swish takes its root term plus three relations' messages, whose
weights W_0 and W_r each get g / sqrt(4). Projections that feed no Swish (the audio stem
W_a, the RGCT's W_Q, W_K, W_V, RGAT's W_r) keep unit gain, so audio enters at the visual
features' scale. The gate and classifier keep PyTorch's defaults: they end the network.

The paper does not state its initialisation; this is an interpretation (docs/MODEL.md).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from avel_dgl import graph
from avel_dgl.nn.rgat import RGAT
from avel_dgl.nn.rgct import RGCT
from avel_dgl.nn.tcn import TCN

# 1 / sqrt(E[silu(x)^2]) for x ~ N(0, 1): the gain that keeps Var = 1 through Linear + Swish.
SWISH_GAIN = 1.6766


def scaled_normal_(weight: torch.Tensor, bias: torch.Tensor | None, fan_in: int, gain: float) -> None:
    """W ~ N(0, (gain / sqrt(fan_in))^2), b = 0."""
    with torch.no_grad():
        weight.normal_(0.0, gain / math.sqrt(fan_in))
        if bias is not None:
            bias.zero_()


def init_swish(model: nn.Module) -> nn.Module:
    """Re-initialise every RGCT, RGAT and TCN layer of `model` and the audio stem by the rule
    above; other modules keep their defaults. Returns the model."""
    for module in model.modules():
        if isinstance(module, RGCT):
            scaled_normal_(module.fc1.weight, module.fc1.bias, module.fc1.in_features, SWISH_GAIN)  # eq 15
            # eq 16: Swish(FC(n_hat + agg)): the FC's input is a sum of two unit-scale terms
            scaled_normal_(module.fc2.weight, module.fc2.bias, module.fc2.in_features, SWISH_GAIN / math.sqrt(2))
            for projection in (*module.query.values(), *module.key_value.values()):
                scaled_normal_(projection.weight, projection.bias, projection.weight.shape[1], 1.0)
        elif isinstance(module, RGAT):
            # Swish(W_0 n + the sum of its incoming relations' messages): 1 + 3 terms
            terms = 1 + len(graph.RELATIONS_INTO[graph.AUDIO])
            scaled_normal_(module.root.weight, module.root.bias, module.root.in_features, SWISH_GAIN / math.sqrt(terms))
            scaled_normal_(module.project.weight, module.project.bias, module.project.weight.shape[1],
                           SWISH_GAIN / math.sqrt(terms))
        elif isinstance(module, TCN):
            for conv in (module.audio, module.visual):  # eq 5: Swish(conv)
                scaled_normal_(conv.weight, conv.bias, conv.in_channels * conv.kernel_size[0], SWISH_GAIN)
    stem = getattr(model, "audio_fc", None)
    if stem is not None:
        scaled_normal_(stem.weight, stem.bias, stem.in_features, 1.0)
    return model
