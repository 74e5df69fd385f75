"""The RGAT layer (Busbridge et al. 2019) on the audio/visual heterograph: the graph-only
baseline of the perspective ablation (Table 3, row 1).

For a node n_i of type m, each relation r it receives (`graph.RELATIONS_INTO[m]`) and each of
H heads of size d = out_dim / H:

    g_j^r    = FC(n_j; W_r)                    per-relation projection (source and destination nodes alike)
    q_i^r    = g_i^r . Q^r,   k_j^r = g_j^r . K^r         per-relation query and key kernels (scalars)
    e_ij^r   = LeakyReLU(q_i^r + k_j^r)                  additive attention logit
    a_ij^r   = softmax of e_ij^r over j in N_r(i)        within the relation only (WIRGAT)
    n'_i     = Swish(FC(n_i; W_0) + Dropout(sum_r sum_{j in N_r(i)} a_ij^r g_j^r))   heads concatenated

Relations are treated as independent: each relation's attention sees only its own neighbours and
the relational messages are summed. That is the assumption the RGCT drops (section 3.3): its
attention runs across a node's relations. A node with no neighbour under a relation (the first
segment has no forward neighbour) receives nothing from it.

Choices Busbridge et al. leave open, made here to match the RGCT's node update (eqs 15-16) so
the two graph layers differ only in how they attend: the root term W_0 (RGCN's self-connection),
Swish, and dropout on the relational sum.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from avel_dgl import graph
from avel_dgl.nn.init import SWISH_GAIN, scaled_normal_
from avel_dgl.nn.rgct import RelationalProjection


class RGAT(nn.Module):
    """One RGAT layer over the audio/visual heterograph. Maps in_dim -> out_dim features.
    `kernel`: 'dgl' or 'torch', required, as the RGCT's."""

    def __init__(self, in_dim: int, out_dim: int, heads: int = 4, dropout: float = 0.2,
                 negative_slope: float = 0.2, *, kernel: str):
        super().__init__()
        self.kernel = graph.check_kernel(kernel)  # a plain attribute: not in the state_dict
        if out_dim % heads:
            raise ValueError(f"out_dim must be divisible by heads, got {out_dim} and {heads}")
        self.heads, self.head_dim = heads, out_dim // heads
        # W_r for every relation of graph.RELATIONS, applied to both node types: a node type
        # needs the W_r of the relations it sends and of those it receives.
        self.project = RelationalProjection(len(graph.RELATIONS), in_dim, out_dim)
        self.att_query = nn.Parameter(torch.empty(len(graph.RELATIONS), heads, self.head_dim))  # Q^r
        self.att_key = nn.Parameter(torch.empty(len(graph.RELATIONS), heads, self.head_dim))  # K^r
        bound = 1 / math.sqrt(self.head_dim)
        nn.init.uniform_(self.att_query, -bound, bound)
        nn.init.uniform_(self.att_key, -bound, bound)
        self.root = nn.Linear(in_dim, out_dim)  # W_0
        self.negative_slope = negative_slope
        self.dropout = nn.Dropout(dropout)

    def init_swish(self) -> None:
        """The `swish` initialisation (nn/init.py) of this layer's weights: Swish takes the root term
        W_0 n plus the messages of the node's three relations, each made by its W_r, so W_0 and W_r
        get the gain divided by sqrt(1 + 3). The attention kernels Q^r, K^r keep their defaults."""
        terms = 1 + len(graph.RELATIONS_INTO[graph.AUDIO])
        scaled_normal_(self.root.weight, self.root.bias, self.root.in_features, SWISH_GAIN / math.sqrt(terms))
        scaled_normal_(self.project.weight, self.project.bias, self.project.weight.shape[1],
                       SWISH_GAIN / math.sqrt(terms))

    def relation_aggregate(self, g: graph.Graph, r: int, g_src: torch.Tensor,
                           g_dst: torch.Tensor) -> torch.Tensor:
        """sum_{j in N_r(i)} a_ij^r g_j^r for every destination node i of relation r.
        g_src, g_dst: (N, H, d) projections by W_r of the source and destination node types.

        Two interchangeable kernels, as for eq 12 (self.kernel): DGL message passing, or torch
        scatter operations over the relation's edge list (for devices the installed DGL cannot
        run on, or where DGL does not import). Both give the same result (tests/test_rgat.py)."""
        rel = graph.RELATIONS[r]
        src_type, _, dst_type = rel
        k = (g_src * self.att_key[r]).sum(-1, keepdim=True)  # (N_src, H, 1)
        q = (g_dst * self.att_query[r]).sum(-1, keepdim=True)  # (N_dst, H, 1)
        if self.kernel == "torch":
            return self._aggregate_torch(g, rel, k, q, g_src)
        graph.require_dgl("RGAT's dgl kernel")
        from dgl import function as fn  # imported here: only the DGL kernel needs DGL
        from dgl.nn.functional import edge_softmax

        # the relation's edges alone: the softmax runs within the relation
        sub = graph.graph_for(g, g_src.device, self.kernel)[rel]
        with sub.local_scope():
            sub.srcnodes[src_type].data["k"] = k
            sub.dstnodes[dst_type].data["q"] = q
            sub.apply_edges(fn.u_add_v("k", "q", "e"))
            logits = F.leaky_relu(sub.edata.pop("e"), self.negative_slope)
            sub.edata["a"] = edge_softmax(sub, logits)  # per destination node and head
            sub.srcnodes[src_type].data["g"] = g_src
            sub.update_all(fn.u_mul_e("g", "a", "m"), fn.sum("m", "h"))
            return sub.dstnodes[dst_type].data["h"]  # (N, H, d); zeros without neighbours

    def _aggregate_torch(self, g, rel, k: torch.Tensor, q: torch.Tensor, g_src: torch.Tensor) -> torch.Tensor:
        """The same within-relation attention with scatter operations over the edge list."""
        src, dst = graph.edge_index(g, rel, k.device)
        logits = F.leaky_relu(q[dst] + k[src], self.negative_slope)  # (E, H, 1)
        index = dst.view(-1, 1, 1).expand_as(logits)
        # softmax over each destination's edges; its largest logit is subtracted for stability
        top = torch.full_like(q, float("-inf")).scatter_reduce(0, index, logits.detach(), "amax")
        weights = torch.exp(logits - top[dst])
        att = weights / torch.zeros_like(q).index_add(0, dst, weights)[dst]
        out = g_src.new_zeros(q.shape[0], *g_src.shape[1:])
        return out.index_add(0, dst, att * g_src[src])  # zeros without neighbours

    def forward(self, g, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """audio, visual: (N, in_dim) node features in the graph's node order -> (N, out_dim) each."""
        feats = {graph.AUDIO: audio, graph.VISUAL: visual}
        # {ntype: R tensors (N, H, d)}: every node projected by every W_r, in graph.RELATIONS
        # order (unbound once: indexing the stacked tensor per relation costs a full-size zero
        # gradient per index in the backward pass)
        proj = {nt: self.project(h).view(h.shape[0], len(graph.RELATIONS), self.heads, self.head_dim).unbind(1)
                for nt, h in feats.items()}
        out = []
        for nt in graph.NODE_TYPES:
            # relations combined independently: a plain sum of their attended messages
            agg = sum(self.relation_aggregate(g, r, proj[graph.RELATIONS[r][0]][r], proj[nt][r])
                      for r in (graph.RELATIONS.index(rel) for rel in graph.RELATIONS_INTO[nt]))
            out.append(F.silu(self.root(feats[nt]) + self.dropout(agg.flatten(1))))
        return out[0], out[1]
