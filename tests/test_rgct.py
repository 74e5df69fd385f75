"""RGCT (eqs 12-16) against an independent dense reference: explicit loops over nodes and relations."""

import math

import torch
import torch.nn.functional as F

from avel_dgl import graph
from avel_dgl.nn.rgct import RGCT, RelationalProjection

T = 10


def neighbours(rel_name: str, t: int, segments: int) -> list[int]:
    """Segment indices whose messages reach segment t under a relation (eqs 1-4)."""
    if rel_name.endswith("forward"):
        return [t - 1] if t > 0 else []
    if rel_name.endswith("backward"):
        return [t + 1] if t < segments - 1 else []
    return [t]


def dense_rgct(layer: RGCT, audio: torch.Tensor, visual: torch.Tensor, videos: int):
    """Eqs 12-16 node by node, relation by relation, using the layer's weights."""
    feats = {"audio": audio, "visual": visual}
    d = layer.out_dim
    out = {}
    for ntype in ("audio", "visual"):
        rows = []
        for i in range(videos * T):
            b, t = divmod(i, T)
            qs, ks, vs = [], [], []
            for r, (src_type, name, _) in enumerate(graph.RELATIONS_INTO[ntype]):
                nbrs = [b * T + s for s in neighbours(name, t, T)]
                src = feats[src_type]
                na = src[nbrs].mean(0) if nbrs else torch.zeros(src.shape[1])  # eq 12
                wq, bq = layer.query[ntype].weight[r], layer.query[ntype].bias[r]
                wkv, bkv = layer.key_value[ntype].weight[r], layer.key_value[ntype].bias[r]
                qs.append(feats[ntype][i] @ wq + bq)
                kv = na @ wkv + bkv
                ks.append(kv[:d])
                vs.append(kv[d:])
            q, k, v = torch.stack(qs), torch.stack(ks), torch.stack(vs)
            att = torch.softmax(q @ k.T / math.sqrt(d), dim=-1)  # eq 13
            na_att = (att @ v).mean(0)  # eq 14, averaged over relations
            n_hat = F.silu(layer.fc1(feats[ntype][i]))  # eq 15
            rows.append(F.silu(layer.fc2(n_hat + na_att)))  # eq 16 (dropout off in eval)
        out[ntype] = torch.stack(rows)
    return out["audio"], out["visual"]


def test_rgct_matches_dense_reference_including_nodes_with_missing_relations():
    torch.manual_seed(0)
    videos, in_dim, out_dim = 2, 6, 4
    layer = RGCT(in_dim, out_dim, dropout=0.5, kernel=graph.DEFAULT_KERNEL).eval()
    audio, visual = torch.randn(videos * T, in_dim), torch.randn(videos * T, in_dim)
    a, v = layer(graph.batch_graph(videos), audio, visual)
    ref_a, ref_v = dense_rgct(layer, audio, visual, videos)
    assert a.shape == (videos * T, out_dim) and v.shape == (videos * T, out_dim)
    torch.testing.assert_close(a, ref_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(v, ref_v, atol=1e-5, rtol=1e-5)


def test_relational_projection_applies_a_separate_map_per_relation():
    torch.manual_seed(0)
    proj = RelationalProjection(3, 5, 2)
    x = torch.randn(4, 5)
    per_relation = [torch.randn(4, 5) for _ in range(3)]
    for r in range(3):
        torch.testing.assert_close(proj(x)[:, r], x @ proj.weight[r] + proj.bias[r])
        torch.testing.assert_close(proj(per_relation)[:, r], per_relation[r] @ proj.weight[r] + proj.bias[r])


def test_rgct_dropout_acts_only_in_training():
    torch.manual_seed(0)
    layer = RGCT(4, 4, dropout=0.9, kernel=graph.DEFAULT_KERNEL)
    x = torch.randn(T, 4)
    g = graph.batch_graph(1)
    layer.eval()
    assert torch.equal(layer(g, x, x)[0], layer(g, x, x)[0])
    layer.train()
    assert not torch.equal(layer(g, x, x)[0], layer(g, x, x)[0])
