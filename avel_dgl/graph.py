"""The graph perspective (eqs 1-4, 17-21): node types, the six relations and their order, video
graphs, cached batch templates and link edges. The only module that knows the graph's structure.

Each video is a DGL heterograph with one `audio` and one `visual` node per segment and six
relations (messages flow from source to destination):

    audio_forward    audio t  -> audio t+1     (eq 1, m = A)
    audio_backward   audio t  -> audio t-1     (eq 2, m = A)
    visual_forward   visual t -> visual t+1    (eq 1, m = V)
    visual_backward  visual t -> visual t-1    (eq 2, m = V)
    audio_to_visual  audio t  -> visual t      (eq 3)
    visual_to_audio  visual t -> audio t       (eq 4)

So every node type receives three relations. `RELATIONS_INTO` fixes their order; every stacked
per-relation tensor in the project (aggregates, projections, attention maps) uses it. (DGL's
own cross-type 'stack' reducer orders by canonical edge type name, so we never rely on it.)

A batch of B videos is `dgl.batch` of B video graphs: node `b * T + t` of each type is segment t
of video b, which is exactly the row order of a dense (B, T, D) tensor flattened to (B*T, D).
Building graphs per step is slow (~80 ms for 96), so templates are built once per batch shape
and reused.

Link (section 3.4): a batch of B originals followed by their B replicas (2B videos, replica of
video b at position B + b) gets extra edges between each original and its replica with the same
six patterns, so every node's temporal and cross-modal neighbourhoods span both videos.
"""

from __future__ import annotations

from functools import lru_cache

import dgl
import torch

from avel_dgl.data.ave import N_SEGMENTS

AUDIO, VISUAL = "audio", "visual"
NODE_TYPES = (AUDIO, VISUAL)

AUDIO_FORWARD = (AUDIO, "audio_forward", AUDIO)
AUDIO_BACKWARD = (AUDIO, "audio_backward", AUDIO)
VISUAL_FORWARD = (VISUAL, "visual_forward", VISUAL)
VISUAL_BACKWARD = (VISUAL, "visual_backward", VISUAL)
AUDIO_TO_VISUAL = (AUDIO, "audio_to_visual", VISUAL)
VISUAL_TO_AUDIO = (VISUAL, "visual_to_audio", AUDIO)

# The paper's R, in the paper's order (r_Af, r_Ab, r_Vf, r_Vb, r_AV, r_VA).
RELATIONS = (AUDIO_FORWARD, AUDIO_BACKWARD, VISUAL_FORWARD, VISUAL_BACKWARD, AUDIO_TO_VISUAL, VISUAL_TO_AUDIO)

# The relations each node type receives, in the order used by every stacked tensor.
RELATIONS_INTO = {
    AUDIO: (AUDIO_FORWARD, AUDIO_BACKWARD, VISUAL_TO_AUDIO),
    VISUAL: (VISUAL_FORWARD, VISUAL_BACKWARD, AUDIO_TO_VISUAL),
}


def _pattern_edges(relation: tuple[str, str, str], src_offset: int, dst_offset: int, t: int) -> tuple[list, list]:
    """Edges of one relation's pattern from the video at node offset src_offset to the one at
    dst_offset (equal offsets: within a video, eqs 1-4; different: link edges, eqs 17-20)."""
    name = relation[1]
    if name.endswith("forward"):
        pairs = [(s, s + 1) for s in range(t - 1)]
    elif name.endswith("backward"):
        pairs = [(s, s - 1) for s in range(1, t)]
    else:  # cross-modal: same segment
        pairs = [(s, s) for s in range(t)]
    return [src_offset + a for a, _ in pairs], [dst_offset + b for _, b in pairs]


def _build(videos: int, linked: bool, t: int) -> dgl.DGLHeteroGraph:
    """One heterograph holding `videos` videos (node b*t+s is segment s of video b)."""
    edges = {}
    for rel in RELATIONS:
        src, dst = [], []
        for b in range(videos):
            s, d = _pattern_edges(rel, b * t, b * t, t)
            src += s
            dst += d
        if linked:
            half = videos // 2
            for b in range(half):
                orig, rep = b * t, (half + b) * t
                for a_off, b_off in ((orig, rep), (rep, orig)):
                    s, d = _pattern_edges(rel, a_off, b_off, t)
                    src += s
                    dst += d
        edges[rel] = (torch.tensor(src, dtype=torch.int64), torch.tensor(dst, dtype=torch.int64))
    return dgl.heterograph(edges, num_nodes_dict={nt: videos * t for nt in NODE_TYPES})


def video_graph(t: int = N_SEGMENTS) -> dgl.DGLHeteroGraph:
    """The graph of one video: 2t nodes, the six relations of eqs 1-4."""
    return _build(1, False, t)


@lru_cache(maxsize=64)
def _batch_template(videos: int, linked: bool, t: int) -> dgl.DGLHeteroGraph:
    if not linked:
        return dgl.batch([video_graph(t)] * videos)
    if videos % 2:
        raise ValueError(f"a linked batch holds originals then replicas: expected an even count, got {videos}")
    # Kept as one graph (not dgl.batch of pairs) so the node order stays originals-then-replicas,
    # the order of the dense (2B, T, D) batch.
    return _build(videos, True, t)


def batch_graph(videos: int, linked: bool = False, t: int = N_SEGMENTS, device: torch.device | str = "cpu"):
    """The cached graph of a batch of `videos` videos. With linked=True the batch is B originals
    followed by their B replicas (videos = 2B) and carries the link edges of eqs 17-21."""
    g = _batch_template(videos, linked, t)
    return g if torch.device(device).type == "cpu" else g.to(device)


def neighbour_means(g: dgl.DGLHeteroGraph, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Eq 12 for every node and relation: the mean of the node's neighbours under each relation.

    feats: {ntype: (N_ntype, D)}. Returns {ntype: (N_ntype, 3, D)} stacked in RELATIONS_INTO order.
    A node with no neighbour under a relation (the first segment has no forward neighbour, the
    last none backward) gets a zero vector there.
    """
    out = {}
    with g.local_scope():
        for ntype, h in feats.items():
            g.nodes[ntype].data["h"] = h
        for ntype in NODE_TYPES:
            means = []
            for rel in RELATIONS_INTO[ntype]:
                g.update_all(dgl.function.copy_u("h", "m"), dgl.function.mean("m", "agg"), etype=rel)
                means.append(g.nodes[ntype].data.pop("agg"))
            out[ntype] = torch.stack(means, dim=1)
    return out
