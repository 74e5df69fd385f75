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

Eq 12 has two interchangeable kernels over the same heterograph: DGL's message passing ("dgl"),
and a plain torch sparse product whose coordinates are the heterograph's own edge index
tensors ("torch", a scatter-mean over the same edges). PyPI's
DGL runs on the CPU only, so on a GPU the torch kernel lets every tensor stay on the device while
the DGL heterograph (kept on the CPU) still describes the structure. Every function that runs
a kernel is told which one ('dgl' or 'torch'): a model's graph layers hold the one it was built
with (nn/dpnet.build), which runtime.Runtime resolves once per process.

DGL is the design wherever it imports. Where it does not (no wheel for this Python, a torch or
numpy it was not built for), `DGL_MISSING` says why, and a batch graph is an `EdgeLists`: the
same node counts and the same edge lists in the same order as `dgl.batch` plus `add_edges` give,
which is all the torch kernel reads.
"""

from __future__ import annotations

import functools
import weakref
from functools import lru_cache
from typing import Callable

import torch

from avel_dgl.format import N_SEGMENTS

try:
    import dgl
    DGL_MISSING = None
except Exception as e:  # ImportError without a wheel; DGL 2.1.0 under a newer torch or numpy 2 fails otherwise
    dgl = None
    DGL_MISSING = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else 'no message'}"

# Eq 12's kernels. Every graph layer is built with one (no default: runtime.Runtime resolves the
# process's kernel once, and nn/dpnet.build hands it to every layer maker).
KERNELS = ("dgl", "torch")
# DGL's kernel where DGL imports, else the torch kernel: the kernel of tests and tools that build
# a model outside a command (commands resolve --kernel with runtime.resolve_kernel, whose 'auto'
# makes the same choice on the CPU).
DEFAULT_KERNEL = "dgl" if dgl is not None else "torch"

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


class EdgeLists:
    """A graph described without DGL, for the torch kernel where DGL does not import: each node
    type's node count and each relation's (src, dst) edge list. It answers the questions the
    torch kernel (and the structure tests) ask of a DGL heterograph with the same answers, edges
    in the same order."""

    device = torch.device("cpu")
    canonical_etypes = RELATIONS

    def __init__(self, nodes: dict[str, int], edges: dict[tuple[str, str, str], tuple[torch.Tensor, torch.Tensor]]):
        self._nodes, self._edges = nodes, edges

    def num_nodes(self, ntype: str) -> int:
        return self._nodes[ntype]

    def edges(self, etype: tuple[str, str, str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self._edges[etype]

    def num_edges(self, etype: tuple[str, str, str] | None = None) -> int:
        return sum(len(self._edges[rel][0]) for rel in ([etype] if etype else RELATIONS))

    def in_degrees(self, etype: tuple[str, str, str]) -> torch.Tensor:
        return torch.bincount(self._edges[etype][1], minlength=self._nodes[etype[2]])


# What a batch graph is (for annotations): DGL's heterograph where DGL imports, else EdgeLists.
Graph = "dgl.DGLHeteroGraph | EdgeLists"


def require_dgl(what: str) -> None:
    """An error naming `what` where DGL does not import (the torch kernel needs no DGL)."""
    if dgl is None:
        raise RuntimeError(f"{what} needs DGL, which does not import here ({DGL_MISSING}); use the torch kernel")


def seed_dgl(seed: int) -> None:
    """Seed DGL's own random generator, where DGL imports (no eq 12 kernel draws from it)."""
    if dgl is not None:
        dgl.seed(seed)


def _edge_tensors(src: list[int], dst: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(src, dtype=torch.int64), torch.tensor(dst, dtype=torch.int64)


def video_graph(t: int = N_SEGMENTS) -> Graph:
    """The graph of one video: 2t nodes, the six relations of eqs 1-4. A DGL heterograph, or
    `EdgeLists` where DGL does not import."""
    if dgl is None:
        return _edge_lists(1, False, t)
    edges = {rel: _edge_tensors(*_pattern_edges(rel, 0, 0, t)) for rel in RELATIONS}
    return dgl.heterograph(edges, num_nodes_dict={nt: t for nt in NODE_TYPES})


def link_edges(relation: tuple[str, str, str], pairs: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(src, dst) of one relation's link edges (eqs 17-20) in a batch of `pairs` originals followed
    by their replicas: the relation's pattern from each original to its replica and back."""
    src, dst = [], []
    for b in range(pairs):
        original, replica = b * t, (pairs + b) * t
        for a_off, b_off in ((original, replica), (replica, original)):
            s, d = _pattern_edges(relation, a_off, b_off, t)
            src += s
            dst += d
    return _edge_tensors(src, dst)


def _edge_lists(videos: int, linked: bool, t: int) -> EdgeLists:
    """What `dgl.batch` then `add_edges` build in `_batch_template`, as plain edge lists: per
    relation, each video's own edges at its node offset b * t, video after video, then the link
    edges."""
    edges = {}
    for rel in RELATIONS:
        src, dst = [], []
        for b in range(videos):
            s, d = _pattern_edges(rel, b * t, b * t, t)
            src += s
            dst += d
        src, dst = _edge_tensors(src, dst)
        if linked:
            link_src, link_dst = link_edges(rel, videos // 2, t)
            src, dst = torch.cat([src, link_src]), torch.cat([dst, link_dst])
        edges[rel] = (src, dst)
    return EdgeLists({nt: videos * t for nt in NODE_TYPES}, edges)


@lru_cache(maxsize=64)
def _batch_template(videos: int, linked: bool, t: int) -> Graph:
    if linked and videos % 2:
        raise ValueError(f"a linked batch holds originals then replicas: expected an even count, got {videos}")
    if dgl is None:
        return _edge_lists(videos, linked, t)
    g = dgl.batch([video_graph(t)] * videos)
    if not linked:
        return g
    # Section 3.4: merge the originals' and replicas' graphs (dgl.batch above, which keeps the
    # node order of the dense (2B, T, D) batch: originals then replicas), then add the link edges
    # of eqs 17-21. add_edges drops the batch information: the result is one graph, since link
    # edges join its videos.
    for rel in RELATIONS:
        g.add_edges(*link_edges(rel, videos // 2, t), etype=rel)
    return g


def batch_graph(videos: int, linked: bool = False, t: int = N_SEGMENTS) -> Graph:
    """The cached graph of a batch of `videos` videos, on the CPU (a DGL heterograph, or
    `EdgeLists` where DGL does not import). With linked=True the batch is B originals followed by
    their B replicas (videos = 2B) and carries the link edges of eqs 17-21. Each kernel takes it
    where it needs it (`graph_for`)."""
    return _batch_template(videos, linked, t)


# graph -> {key: what was built from it}: a batch graph's copy on a device, its eq 12 mean matrix,
# edge lists and neighbour counts, each built once and reused by every step. Weak keys: an entry
# lives as long as its (cached) template.
_built_from: "weakref.WeakKeyDictionary[Graph, dict]" = weakref.WeakKeyDictionary()


def _built_once(g: Graph, key: tuple, build: Callable[[], object]):
    """What build() returns for (g, key), built on the first call."""
    per_graph = _built_from.setdefault(g, {})
    if key not in per_graph:
        per_graph[key] = build()
    return per_graph[key]


def check_kernel(kernel: str) -> str:
    """`kernel` if it names one of KERNELS, else a ValueError (a programming error: the command
    line resolves --kernel in runtime.py, with its own message)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel: expected 'dgl' or 'torch', found {kernel!r}")
    return kernel


def graph_for(g: Graph, device: torch.device | str, kernel: str) -> Graph:
    """The graph `kernel` works on for features on `device`. The torch kernel keeps g where it is
    (on the CPU; its `mean_matrix` goes to the device instead, once); DGL's needs g on the device,
    copied there once per graph and device (only a DGL build with that device's support can)."""
    device = torch.device(device)
    if kernel == "torch" or g.device == device:
        return g
    require_dgl("the dgl kernel")
    return _built_once(g, ("graph", device), lambda: g.to(device))


def mean_matrix(g: Graph, device: torch.device | str) -> torch.Tensor:
    """Eq 12 as a sparse (nodes * R, nodes) matrix over the node order [audio nodes; visual nodes]:
    row node * R + r holds 1 / |neighbours| at each neighbour of that node under its r-th relation
    (RELATIONS_INTO order). Its coordinates are g.edges() of each relation; built once per graph
    and device, then reused by every step."""
    device = torch.device(device)
    return _built_once(g, ("mean_matrix", device), lambda: _build_mean_matrix(g).to(device))


def _build_mean_matrix(g: Graph) -> torch.Tensor:
    offset = {AUDIO: 0, VISUAL: g.num_nodes(AUDIO)}
    nodes = g.num_nodes(AUDIO) + g.num_nodes(VISUAL)
    relations = len(RELATIONS_INTO[AUDIO])
    rows, cols = [], []
    for ntype in NODE_TYPES:
        for r, rel in enumerate(RELATIONS_INTO[ntype]):
            src, dst = g.edges(etype=rel)
            rows.append((dst.cpu() + offset[ntype]) * relations + r)
            cols.append(src.cpu() + offset[rel[0]])
    rows, cols = torch.cat(rows), torch.cat(cols)
    degree = torch.bincount(rows, minlength=nodes * relations)
    values = 1.0 / degree[rows].to(torch.float32)
    # check_invariants: built once per template, so checking costs nothing (newer torch warns when unset)
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (nodes * relations, nodes),
                                   check_invariants=True).coalesce()


def edge_index(g: Graph, relation: tuple[str, str, str], device: torch.device | str):
    """(src, dst) node indices of one relation's edges on `device`, for layers that work on edge
    lists with the torch kernel (RGAT). Built once per graph, relation and device."""
    device = torch.device(device)
    return _built_once(g, ("edges", relation, device),
                       lambda: tuple(x.to(device) for x in g.edges(etype=relation)))


# Eq 12's normalisation of a node's neighbours under one relation (config.ModelConfig.
# neighbour_norm): "mean" (the paper's) divides their sum by their count k, "sqrt" by sqrt(k).
# Without link edges k <= 1 and the two agree; a linked graph gives k = 2 (own video and replica),
# where the mean of two uncorrelated neighbours is 1/sqrt(2) of one neighbour's size and
# sum / sqrt(2) keeps it. It tested whether that scale is what costs Link accuracy; it is not
# (docs/RESULTS.md, "Why Link lowers accuracy here, tested").
def sqrt_degrees(g: Graph, device: torch.device | str) -> dict[str, torch.Tensor]:
    """{ntype: (N_ntype, R, 1)}: the square root of each node's neighbour count under each relation
    it receives (RELATIONS_INTO order); the factor that turns eq 12's mean into sum / sqrt(count).
    Built once per graph and device."""
    device = torch.device(device)
    return _built_once(g, ("sqrt_degrees", device), lambda: {
        ntype: torch.stack([g.in_degrees(etype=rel).cpu().float().sqrt() for rel in RELATIONS_INTO[ntype]],
                           dim=1).unsqueeze(2).to(device)
        for ntype in NODE_TYPES})


def relational_update(g: Graph, feats: dict[str, torch.Tensor],
                      cross_reducer: Callable[[str, list[torch.Tensor]], torch.Tensor],
                      kernel: str, neighbour_norm: str = "mean") -> dict[str, torch.Tensor]:
    """Per relation, the mean of each node's neighbours (eq 12); then, per node type m,
    `cross_reducer(m, means)` combines a node's relations, where means holds one (N_m, D) tensor
    per relation in RELATIONS_INTO[m] order. Returns {ntype: cross_reducer's result}.

    feats: {ntype: (N_ntype, D)}. A node with no neighbour under a relation (the first segment has
    no forward neighbour, the last none backward) gets a zero vector there. neighbour_norm "sqrt"
    gives sum / sqrt(count) instead of the mean (the note above `sqrt_degrees`): each kernel's
    mean times `sqrt_degrees`, before the cross reducer.

    DGL kernel: one `multi_update_all` per destination node type, each relation with its own
    message (copy_u) and reduce (mean) function, and `cross_reducer` as DGL's callable cross
    reducer. DGL 2.1 hands a callable the per-relation results in the order of the dict it was
    given (only its built-in 'stack' reorders them by edge type id), and the dict is built in
    RELATIONS_INTO order. Torch kernel: the same means from one sparse product over the same edges
    (`mean_matrix`), then the same `cross_reducer`. `kernel`: 'dgl' or 'torch'; both give the
    same result.
    """
    if neighbour_norm not in ("mean", "sqrt"):
        raise ValueError(f"neighbour_norm: expected 'mean' or 'sqrt', found {neighbour_norm!r}")
    if neighbour_norm == "sqrt":
        scale, reduce_means = sqrt_degrees(g, feats[AUDIO].device), cross_reducer

        def cross_reducer(ntype, means):  # mean * sqrt(count) = sum / sqrt(count), per relation
            return reduce_means(ntype, [m * scale[ntype][:, r] for r, m in enumerate(means)])
    if kernel == "torch":
        means = _neighbour_means_torch(g, feats)
        return {nt: cross_reducer(nt, list(means[nt].unbind(1))) for nt in NODE_TYPES}
    check_kernel(kernel)
    require_dgl("the dgl kernel")
    g = graph_for(g, feats[AUDIO].device, kernel)
    out = {}
    with g.local_scope():
        for ntype, h in feats.items():
            g.nodes[ntype].data["h"] = h
        for ntype in NODE_TYPES:
            per_relation = {rel: (dgl.function.copy_u("h", "m"), dgl.function.mean("m", "out"))
                            for rel in RELATIONS_INTO[ntype]}
            g.multi_update_all(per_relation, functools.partial(cross_reducer, ntype))
            out[ntype] = g.nodes[ntype].data["out"]
    return out


def neighbour_means(g: Graph, feats: dict[str, torch.Tensor],
                    kernel: str, neighbour_norm: str = "mean") -> dict[str, torch.Tensor]:
    """Eq 12 alone for every node and relation: {ntype: (N_ntype, 3, D)} stacked in RELATIONS_INTO
    order (zeros where a node has no neighbour under a relation)."""
    return relational_update(g, feats, lambda ntype, means: torch.stack(means, dim=1), kernel, neighbour_norm)


def _neighbour_means_torch(g: Graph, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Eq 12 for all six relations as one sparse product: the scatter-mean over g's edges."""
    h = torch.cat([feats[AUDIO], feats[VISUAL]])  # (N_audio + N_visual, D)
    matrix = mean_matrix(g, h.device)
    means = torch.sparse.mm(matrix.to(h.dtype), h).view(h.shape[0], -1, h.shape[1])  # (nodes, R, D)
    n_audio = feats[AUDIO].shape[0]
    return {AUDIO: means[:n_audio], VISUAL: means[n_audio:]}
