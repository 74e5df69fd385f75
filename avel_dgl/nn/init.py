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
aggregate (k = 2), and RGAT's Swish takes its root term plus three relations' messages, so its
W_0 and its relation projections W_r each get g / sqrt(4). Projections that feed no Swish (the
audio stem W_a, the RGCT's W_Q, W_K, W_V) keep unit gain, so audio enters at the visual
features' scale. RGAT's attention kernels Q^r, K^r keep their own initialisation (they weigh
messages and feed no Swish), and the gate and classifier keep PyTorch's defaults: they end the
network.

Each layer applies the rule to its own weights (the `init_swish` methods of RGCT, RGAT and TCN);
`init_swish(model)` below walks a model and calls them.

The paper does not state its initialisation; this is an interpretation (docs/MODEL.md).
"""

from __future__ import annotations

import math

import torch
from torch import nn

# 1 / sqrt(E[silu(x)^2]) for x ~ N(0, 1): the gain that keeps Var = 1 through Linear + Swish.
SWISH_GAIN = 1.6766


def scaled_normal_(weight: torch.Tensor, bias: torch.Tensor | None, fan_in: int, gain: float) -> None:
    """W ~ N(0, (gain / sqrt(fan_in))^2), b = 0."""
    with torch.no_grad():
        weight.normal_(0.0, gain / math.sqrt(fan_in))
        if bias is not None:
            bias.zero_()


def init_swish(model: nn.Module) -> nn.Module:
    """Re-initialise `model` by the rule above: every layer with its own `init_swish` (RGCT, RGAT,
    TCN), in module order, then the audio stem W_a at unit gain; other modules keep their defaults.
    The order is the order in which the weights draw from the random generator: a seed gives the
    same network as in earlier versions. Returns the model."""
    for module in model.modules():
        init = getattr(module, "init_swish", None)
        if init is not None:
            init()
    stem = getattr(model, "audio_fc", None)
    if stem is not None:
        scaled_normal_(stem.weight, stem.bias, stem.in_features, 1.0)
    return model
