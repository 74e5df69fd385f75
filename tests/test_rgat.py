"""The RGAT layer against a dense reference written from the definitions (eqs 1-4 and 17-20 for
the edges; Busbridge et al.'s within-relation attention for the update)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avel_dgl import graph
from avel_dgl.nn.rgat import RGAT
from helpers import needs_dgl

T = 10


def dense_adjacency(relation, videos: int, linked: bool) -> torch.Tensor:
    """(N_dst, N_src) 0/1 matrix of `relation` for a batch of `videos` videos, built from the
    definitions and not from graph.py: within each video (eqs 1-4) and, when linked, between an
    original b and its replica b + videos/2 in both directions (eqs 17-20)."""
    name = relation[1]
    n = videos * T
    adj = torch.zeros(n, n)
    half = videos // 2

    def group(b):  # videos whose nodes are joined by this relation's pattern
        return b % half if linked else b

    for bs in range(videos):
        for bd in range(videos):
            if group(bs) != group(bd):
                continue
            for s in range(T):
                d = s + 1 if name.endswith("forward") else s - 1 if name.endswith("backward") else s
                if 0 <= d < T:
                    adj[bd * T + d, bs * T + s] = 1
    return adj


def reference_rgat(layer: RGAT, feats: dict, videos: int, linked: bool) -> dict:
    """Node updates computed densely, one relation and head at a time."""
    w, b = layer.project.weight, layer.project.bias
    heads, d = layer.heads, layer.head_dim
    out = {}
    for nt in graph.NODE_TYPES:
        n = feats[nt].shape[0]
        total = torch.zeros(n, heads * d)
        for rel in graph.RELATIONS_INTO[nt]:
            r = graph.RELATIONS.index(rel)
            g_src = (feats[rel[0]] @ w[r] + b[r]).view(n, heads, d)
            g_dst = (feats[nt] @ w[r] + b[r]).view(n, heads, d)
            adj = dense_adjacency(rel, videos, linked)
            for h in range(heads):
                q = g_dst[:, h] @ layer.att_query[r, h]  # (N_dst,)
                k = g_src[:, h] @ layer.att_key[r, h]  # (N_src,)
                logits = F.leaky_relu(q[:, None] + k[None, :], layer.negative_slope)
                att = torch.softmax(logits.masked_fill(adj == 0, float("-inf")), dim=1)
                att = torch.nan_to_num(att)  # a node without neighbours under r receives nothing
                total[:, h * d:(h + 1) * d] += att @ g_src[:, h]
        out[nt] = F.silu(layer.root(feats[nt]) + total)
    return out


@pytest.mark.parametrize("kernel", [pytest.param("dgl", marks=needs_dgl), "torch"])
@pytest.mark.parametrize("linked", [False, True])
def test_rgat_matches_dense_reference(linked, kernel):
    torch.manual_seed(0)
    videos = 4 if linked else 3
    layer = RGAT(in_dim=6, out_dim=8, heads=2, dropout=0.2, kernel=kernel).eval()
    feats = {nt: torch.randn(videos * T, 6) for nt in graph.NODE_TYPES}
    g = graph.batch_graph(videos, linked=linked)
    audio, visual = layer(g, feats[graph.AUDIO], feats[graph.VISUAL])
    with torch.no_grad():
        ref = reference_rgat(layer, feats, videos, linked)
    torch.testing.assert_close(audio, ref[graph.AUDIO], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(visual, ref[graph.VISUAL], atol=1e-5, rtol=1e-5)


@needs_dgl
def test_rgat_kernels_give_the_same_gradients():
    torch.manual_seed(0)
    layer = RGAT(in_dim=6, out_dim=8, heads=2, dropout=0.0, kernel="dgl")
    feats = [torch.randn(4 * T, 6) for _ in graph.NODE_TYPES]
    grads = {}
    for kernel in ("dgl", "torch"):
        layer.kernel = kernel  # the same weights under each kernel
        layer.zero_grad()
        a, v = layer(graph.batch_graph(4, linked=True), *feats)
        (a.square().sum() + v.square().sum()).backward()
        grads[kernel] = [p.grad.clone() for p in layer.parameters()]
    for dgl_grad, torch_grad in zip(grads["dgl"], grads["torch"]):
        torch.testing.assert_close(torch_grad, dgl_grad, atol=1e-5, rtol=1e-5)


def test_rgat_attention_is_within_relation_only_when_linked():
    """On one video's graph a node has at most one neighbour per relation, so the within-relation
    softmax is 1 and the attention kernels get no gradient; linking gives two neighbours per
    relation, and then the kernels learn. (Why the RGAT baseline's attention is idle in the Base
    and WSEL columns.)"""
    torch.manual_seed(0)
    layer = RGAT(in_dim=6, out_dim=8, heads=2, dropout=0.0, kernel=graph.DEFAULT_KERNEL)
    grads = {}
    for linked in (False, True):
        layer.zero_grad()
        feats = [torch.randn(4 * T, 6) for _ in graph.NODE_TYPES]
        a, v = layer(graph.batch_graph(4, linked=linked), *feats)
        (a.square().sum() + v.square().sum()).backward()
        grads[linked] = layer.att_key.grad.abs().sum().item() + layer.att_query.grad.abs().sum().item()
    assert grads[False] == 0.0
    assert grads[True] > 0.0
