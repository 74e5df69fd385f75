"""Link (eqs 17-21): the linked batch graph's edges and its neighbourhood means, and the engine
feeding originals, replicas and the linked graph to the model."""

from __future__ import annotations

import torch
from torch import nn

from avel_dgl import engine, graph
from avel_dgl.config import get_preset
from avel_dgl.data.dataset import SplitData
from helpers import needs_dgl

T = 10


def edge_set(g, rel) -> set[tuple[int, int]]:
    src, dst = g.edges(etype=rel)
    return set(zip(src.tolist(), dst.tolist()))


def pair_pattern(rel, videos: tuple[int, int], t: int = T) -> set[tuple[int, int]]:
    """Eqs 17-20 for an original/replica pair: the relation's offsets between any of the two
    videos (source video a, destination video b), including a == b (eqs 1-4 within a video)."""
    name = rel[1]
    if name.endswith("forward"):
        steps = [(s, s + 1) for s in range(t - 1)]
    elif name.endswith("backward"):
        steps = [(s, s - 1) for s in range(1, t)]
    else:
        steps = [(s, s) for s in range(t)]
    return {(a * t + s, b * t + d) for a in videos for b in videos for s, d in steps}


def test_one_linked_pair_has_the_edges_of_eqs_17_to_20():
    g = graph.batch_graph(2, linked=True)
    assert g.num_nodes("audio") == g.num_nodes("visual") == 2 * T
    for rel in graph.RELATIONS:
        got = edge_set(g, rel)
        assert got == pair_pattern(rel, (0, 1)), rel
        # 4 copies of the within-video pattern: orig->orig, rep->rep, orig->rep, rep->orig
        assert g.num_edges(rel) == 4 * (T if rel in (graph.AUDIO_TO_VISUAL, graph.VISUAL_TO_AUDIO) else T - 1)
    # explicit examples: audio 3 of the original receives forward from audio 2 of both videos
    assert {(2, 3), (12, 3), (2, 13), (12, 13)} <= edge_set(g, graph.AUDIO_FORWARD)
    assert (0, 19) not in edge_set(g, graph.AUDIO_BACKWARD)  # no wrap-around
    assert {(4, 4), (14, 4), (4, 14), (14, 14)} <= edge_set(g, graph.VISUAL_TO_AUDIO)


def test_linked_batch_pairs_original_b_with_replica_b_plus_half_and_nothing_else():
    b = 3
    g = graph.batch_graph(2 * b, linked=True)
    for rel in graph.RELATIONS:
        want = set().union(*(pair_pattern(rel, (i, b + i)) for i in range(b)))
        assert edge_set(g, rel) == want, rel
        per_pair = T if rel in (graph.AUDIO_TO_VISUAL, graph.VISUAL_TO_AUDIO) else T - 1
        assert g.num_edges(rel) == 4 * b * per_pair


def _one_graph_from_edge_lists(videos: int, t: int = T):
    """How the linked template was built before the batch-then-add_edges form (commit 1beb270):
    one heterograph from edge lists, each relation's within-video edges video by video, then its
    link edges pair by pair (original -> replica, then replica -> original)."""
    import dgl

    half, edges = videos // 2, {}
    for rel in graph.RELATIONS:
        src, dst = [], []
        pattern = sorted(pair_pattern(rel, (0,), t), key=lambda e: e[1])  # one video, by destination
        for b in range(videos):
            src += [b * t + s for s, _ in pattern]
            dst += [b * t + d for _, d in pattern]
        for b in range(half):
            for x, y in ((b, half + b), (half + b, b)):
                src += [x * t + s for s, _ in pattern]
                dst += [y * t + d for _, d in pattern]
        edges[rel] = (torch.tensor(src), torch.tensor(dst))
    return dgl.heterograph(edges, num_nodes_dict={nt: videos * t for nt in graph.NODE_TYPES})


@needs_dgl
def test_linked_template_is_dgl_batch_plus_link_edges_equal_edge_for_edge_to_the_edge_list_graph():
    for videos in (2, 6):
        g, want = graph.batch_graph(videos, linked=True), _one_graph_from_edge_lists(videos)
        assert g.batch_size == 1  # add_edges dropped the per-video batch information: one graph
        for nt in graph.NODE_TYPES:
            assert g.num_nodes(nt) == want.num_nodes(nt)
        for rel in graph.RELATIONS:
            for got_ids, want_ids in zip(g.edges(order="eid", etype=rel), want.edges(order="eid", etype=rel)):
                assert torch.equal(got_ids, want_ids), rel
    # built once per shape: every step of an epoch gets the same object
    assert graph.batch_graph(6, linked=True) is graph.batch_graph(6, linked=True)


@needs_dgl
def test_edge_lists_without_dgl_are_dgls_batch_graph_edge_for_edge():
    """graph.EdgeLists, the batch graph where DGL does not import: DGL's own batch graph's node
    counts, edges in DGL's edge-id order, in-degrees and eq 12 matrix, plain and linked."""
    for videos, linked, t in ((1, False, 10), (3, False, 10), (2, True, 10), (6, True, 4)):
        dgl_graph, lists = graph.batch_graph(videos, linked, t), graph._edge_lists(videos, linked, t)
        assert isinstance(lists, graph.EdgeLists) and not isinstance(dgl_graph, graph.EdgeLists)
        for nt in graph.NODE_TYPES:
            assert lists.num_nodes(nt) == dgl_graph.num_nodes(nt)
        for rel in graph.RELATIONS:
            for ours, theirs in zip(lists.edges(etype=rel), dgl_graph.edges(order="eid", etype=rel)):
                assert torch.equal(ours, theirs), rel
            assert torch.equal(lists.in_degrees(etype=rel), dgl_graph.in_degrees(etype=rel))
            assert lists.num_edges(rel) == dgl_graph.num_edges(rel)
        ours, theirs = graph.mean_matrix(lists, "cpu"), graph.mean_matrix(dgl_graph, "cpu")
        assert torch.equal(ours.indices(), theirs.indices()) and torch.equal(ours.values(), theirs.values())
    assert set(graph._edge_lists(1, False, 10).canonical_etypes) == set(graph.video_graph().canonical_etypes)


def test_linked_neighbourhood_means_match_a_hand_computation():
    # t = 4 segments, scalar features. Original audio 1..4, replica 10..40; original visual
    # 100..400, replica 1000..4000. Each mean is over the node's neighbours in both videos.
    g = graph.batch_graph(2, linked=True, t=4)
    audio = torch.tensor([1., 2, 3, 4, 10, 20, 30, 40])[:, None]
    visual = torch.tensor([100., 200, 300, 400, 1000, 2000, 3000, 4000])[:, None]
    na = graph.neighbour_means(g, {"audio": audio, "visual": visual}, graph.DEFAULT_KERNEL)
    # audio receives (audio_forward, audio_backward, visual_to_audio), in RELATIONS_INTO order
    forward = [0, (1 + 10) / 2, (2 + 20) / 2, (3 + 30) / 2]  # segment 0 has no forward neighbour
    backward = [(2 + 20) / 2, (3 + 30) / 2, (4 + 40) / 2, 0]
    v2a = [(100 + 1000) / 2, (200 + 2000) / 2, (300 + 3000) / 2, (400 + 4000) / 2]
    want_audio = torch.tensor([forward, backward, v2a]).T.repeat(2, 1)  # the replica's nodes see the same
    assert torch.allclose(na["audio"][..., 0], want_audio)
    v_forward = [0, 550, 1100, 1650]
    v_backward = [1100, 1650, 2200, 0]
    a2v = [5.5, 11, 16.5, 22]
    assert torch.allclose(na["visual"][..., 0], torch.tensor([v_forward, v_backward, a2v]).T.repeat(2, 1))

    # Without the link each video only sees itself.
    plain = graph.neighbour_means(graph.batch_graph(2, linked=False, t=4), {"audio": audio, "visual": visual}, graph.DEFAULT_KERNEL)
    assert plain["audio"][1, 0, 0] == 1 and plain["audio"][5, 0, 0] == 10


class Spy(nn.Module):
    """A linear classifier on audio that records what the engine feeds it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(128, 29)
        self.calls = []

    def forward(self, g, audio, visual):
        self.calls.append((g, audio.clone(), visual.clone()))
        return self.fc(audio)


def test_engine_appends_replicas_after_originals_and_uses_the_linked_graph():
    n = 10
    data = SplitData(torch.randn(n, T, 128), torch.randn(n, T, 512), torch.randint(0, 29, (n, T)),
                     torch.zeros(n, dtype=torch.long), torch.arange(n))
    seen = []

    def replicas(index):
        rep = (data.audio[index] + 1000, data.visual[index] + 1000)
        seen.append((index.clone(), *rep))
        return rep

    for link in (True, False):
        cfg = get_preset("small").train
        cfg.batch_size, cfg.link, cfg.replicate = 4, link, True
        model, seen[:] = Spy(), []
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        engine.train_one_epoch(model, data, opt, sched, cfg, torch.Generator().manual_seed(0), replicas)
        assert len(model.calls) == 3  # batches of 4, 4, 2
        for (g, audio, visual), (index, rep_a, rep_v) in zip(model.calls, seen):
            b = len(index)
            assert torch.equal(audio, torch.cat([data.audio[index], rep_a]))
            assert torch.equal(visual, torch.cat([data.visual[index], rep_v]))
            assert g is graph.batch_graph(2 * b, linked=link)
