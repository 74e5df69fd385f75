"""The Relational Graph Convolutional Transformer layer (section 3.3, eqs 12-16).

For a node n_i of type m (audio or visual) and each relation r it receives (three per node
type, ordered by `graph.RELATIONS_INTO[m]`):

    NA_i^r   = mean of n_i's neighbours under r                   (eq 12; zeros if it has none;
                                                                   neighbour_norm="sqrt": their
                                                                   sum / sqrt(count), beyond the paper)
    Q_i^r    = FC(n_i; W_Q^r)        its relational polymorph
    K_i^r    = FC(NA_i^r; W_K^r),  V_i^r = FC(NA_i^r; W_V^r)
    Att_i    = softmax(Q_i K_i^T / sqrt(d))  across the node's relations   (eq 13, R x R)
    NA_att   = Att_i V_i, averaged over the relation axis             (eq 14)
    n_hat_i  = Swish(FC(n_i; W_1))                                    (eq 15)
    n'_i     = Swish(FC(n_hat_i + Dropout(avg NA_att); W_2))          (eq 16)

Each relation has its own W_Q, W_K, W_V (stored stacked along a relation axis per node type, so
one layer costs a few large matrix products instead of one small product per relation). W_1 and
W_2 are shared by both node types, as in the paper's notation.

In DGL's terms (the design of `graph.relational_update`): each relation's message and reduce
functions compute eq 12, and `attend` (eqs 13-14) is the cross-relation reducer that combines a
node type's relations. The attention is per node type over its three incoming relations, not a
6 x 6 map over all relations (docs/MODEL.md says why).
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from avel_dgl import graph
from avel_dgl.nn.init import SWISH_GAIN, scaled_normal_


class RelationalProjection(nn.Module):
    """R independent affine maps in_dim -> out_dim, applied as one batched product.

    forward(x) with x (N, in_dim) applies all R maps to x: (N, R, out_dim).
    forward(xs) with a list of R tensors (N, in_dim) applies map r to xs[r]: (N, R, out_dim).
    """

    def __init__(self, relations: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(relations, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(relations, out_dim))
        # Same initialisation as R separate nn.Linear layers.
        bound = 1 / math.sqrt(in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        r, i, o = self.weight.shape
        if isinstance(x, torch.Tensor):  # one (N, in) @ (in, R*out) product
            y = x @ self.weight.permute(1, 0, 2).reshape(i, r * o)
            return y.view(-1, r, o) + self.bias
        # (R, N, in) @ (R, in, out): one batched product over relations, stacked relation-major
        # so the product reads contiguous rows
        return torch.bmm(torch.stack(x), self.weight).transpose(0, 1) + self.bias


class RGCT(nn.Module):
    """One RGCT layer over the audio/visual heterograph. Maps in_dim -> out_dim features.
    `kernel`: eq 12's kernel, 'dgl' or 'torch' (graph.py), required: a model's layers all take the
    process's (nn/dpnet.build). `neighbour_norm`: eq 12's normalisation, 'mean' or 'sqrt'
    (graph.relational_update)."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.2, *, kernel: str,
                 neighbour_norm: str = "mean"):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        # a plain attribute: not in the state_dict, so checkpoints hold no kernel and load under either
        self.kernel = graph.check_kernel(kernel)
        self.neighbour_norm = neighbour_norm
        self.query = nn.ModuleDict()
        self.key_value = nn.ModuleDict()  # keys and values projected together: out_dim * 2
        for ntype, relations in graph.RELATIONS_INTO.items():
            self.query[ntype] = RelationalProjection(len(relations), in_dim, out_dim)
            self.key_value[ntype] = RelationalProjection(len(relations), in_dim, 2 * out_dim)
        self.fc1 = nn.Linear(in_dim, out_dim)  # W_1
        self.fc2 = nn.Linear(out_dim, out_dim)  # W_2
        self.dropout = nn.Dropout(dropout)

    def init_swish(self) -> None:
        """The `swish` initialisation (nn/init.py) of this layer's weights: W_1 feeds Swish (eq 15);
        W_2 feeds Swish with the sum of two unit-scale terms, n_hat and the attended aggregate
        (eq 16); the projections W_Q, W_K, W_V feed no Swish and keep unit gain."""
        scaled_normal_(self.fc1.weight, self.fc1.bias, self.fc1.in_features, SWISH_GAIN)
        scaled_normal_(self.fc2.weight, self.fc2.bias, self.fc2.in_features, SWISH_GAIN / math.sqrt(2))
        for projection in (*self.query.values(), *self.key_value.values()):
            scaled_normal_(projection.weight, projection.bias, projection.weight.shape[1], 1.0)

    def attend(self, ntype: str, h: torch.Tensor, na: list[torch.Tensor]) -> torch.Tensor:
        """Eqs 13-14 and the relation average for one node type: the cross-relation reduce.
        h (N, in): the nodes; na: their R neighbourhood means (N, in), RELATIONS_INTO order -> (N, out)."""
        q = self.query[ntype](h)  # (N, R, d)
        k, v = self.key_value[ntype](na).split(self.out_dim, dim=-1)  # (N, R, d) each
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(self.out_dim), dim=-1)  # eq 13, (N, R, R)
        # eq 14 then the relation average: avg_r (Att V)_r = (avg_r Att) V, one row per node.
        return (att.mean(dim=1, keepdim=True) @ v).squeeze(1)  # (N, d)

    def forward(self, g, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """audio, visual: (N, in_dim) node features in the graph's node order -> (N, out_dim) each."""
        feats = {graph.AUDIO: audio, graph.VISUAL: visual}
        # eq 12 per relation, eqs 13-14 across each node type's relations
        agg = graph.relational_update(g, feats, lambda ntype, na: self.attend(ntype, feats[ntype], na), self.kernel,
                                      self.neighbour_norm)
        h, agg = torch.cat([audio, visual]), torch.cat([agg[graph.AUDIO], agg[graph.VISUAL]])
        out = F.silu(self.fc2(F.silu(self.fc1(h)) + self.dropout(agg)))  # eqs 15-16
        return out[: audio.shape[0]], out[audio.shape[0]:]
