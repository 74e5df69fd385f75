"""Graph perspective: exact edge lists (eqs 1-4), batch layout, link edges (eqs 17-21), relation order."""

import torch

from avel_dgl import graph


def edge_set(g, rel):
    src, dst = g.edges(etype=rel)
    return set(zip(src.tolist(), dst.tolist()))


def test_video_graph_has_the_six_relations_of_eqs_1_to_4():
    g = graph.video_graph(10)
    assert g.num_nodes("audio") == g.num_nodes("visual") == 10
    assert set(g.canonical_etypes) == set(graph.RELATIONS)
    forward = {(t, t + 1) for t in range(9)}
    backward = {(t, t - 1) for t in range(1, 10)}
    same = {(t, t) for t in range(10)}
    assert edge_set(g, graph.AUDIO_FORWARD) == forward
    assert edge_set(g, graph.VISUAL_FORWARD) == forward
    assert edge_set(g, graph.AUDIO_BACKWARD) == backward
    assert edge_set(g, graph.VISUAL_BACKWARD) == backward
    assert edge_set(g, graph.AUDIO_TO_VISUAL) == same
    assert edge_set(g, graph.VISUAL_TO_AUDIO) == same
    assert g.num_edges() == 9 * 4 + 10 * 2


def test_relations_into_lists_each_node_types_incoming_relations_in_fixed_order():
    assert graph.RELATIONS_INTO["audio"] == (graph.AUDIO_FORWARD, graph.AUDIO_BACKWARD, graph.VISUAL_TO_AUDIO)
    assert graph.RELATIONS_INTO["visual"] == (graph.VISUAL_FORWARD, graph.VISUAL_BACKWARD, graph.AUDIO_TO_VISUAL)
    for ntype, rels in graph.RELATIONS_INTO.items():
        assert all(dst == ntype for _, _, dst in rels)
    assert sorted(r for rels in graph.RELATIONS_INTO.values() for r in rels) == sorted(graph.RELATIONS)


def test_batch_keeps_videos_disjoint_and_in_dense_row_order():
    g = graph.batch_graph(3)
    assert g.num_nodes("audio") == 30
    fwd = edge_set(g, graph.AUDIO_FORWARD)
    assert fwd == {(b * 10 + t, b * 10 + t + 1) for b in range(3) for t in range(9)}
    assert edge_set(g, graph.AUDIO_TO_VISUAL) == {(i, i) for i in range(30)}
    assert graph.batch_graph(3) is g  # cached template, not rebuilt


def test_linked_batch_adds_cross_video_edges_with_the_same_patterns():
    b = 2  # two originals (videos 0, 1) and their replicas (videos 2, 3)
    g = graph.batch_graph(2 * b, linked=True)
    within = edge_set(graph.batch_graph(2 * b), graph.AUDIO_FORWARD)
    fwd = edge_set(g, graph.AUDIO_FORWARD)
    link = fwd - within
    expected = set()
    for v in range(b):
        o, r = v * 10, (b + v) * 10
        expected |= {(o + t, r + t + 1) for t in range(9)} | {(r + t, o + t + 1) for t in range(9)}
    assert link == expected
    av = edge_set(g, graph.AUDIO_TO_VISUAL)
    assert (0 + 4, 20 + 4) in av and (20 + 4, 0 + 4) in av and (0 + 4, 10 + 4) not in av
    for rel in graph.RELATIONS:  # every relation doubles: within-video plus link copies
        assert g.num_edges(rel) == 2 * graph.batch_graph(2 * b).num_edges(rel)


def test_neighbour_means_follow_relation_order_with_zeros_for_missing_neighbours():
    g = graph.batch_graph(1)
    audio = torch.arange(10.0).unsqueeze(1)
    visual = 100 + torch.arange(10.0).unsqueeze(1)
    na = graph.neighbour_means(g, {"audio": audio, "visual": visual}, graph.DEFAULT_KERNEL)
    assert na["audio"].shape == (10, 3, 1)
    a = na["audio"][:, :, 0]
    assert a[0].tolist() == [0.0, 1.0, 100.0]  # no forward neighbour at t=0 -> zero
    assert a[5].tolist() == [4.0, 6.0, 105.0]  # forward from t-1, backward from t+1, visual at t
    assert a[9].tolist() == [8.0, 0.0, 109.0]  # no backward neighbour at the last segment
    v = na["visual"][:, :, 0]
    assert v[5].tolist() == [104.0, 106.0, 5.0]


def test_neighbour_means_average_over_linked_neighbourhoods():
    g = graph.batch_graph(2, linked=True)  # video 0 and its replica, video 1
    audio = torch.cat([torch.zeros(10), torch.full((10,), 10.0)]).unsqueeze(1)
    visual = torch.cat([torch.ones(10), torch.full((10,), 3.0)]).unsqueeze(1)
    na = graph.neighbour_means(g, {"audio": audio, "visual": visual}, graph.DEFAULT_KERNEL)["audio"][:, :, 0]
    # audio t=5 of the original: forward neighbours are audio t=4 of both videos: (0 + 10) / 2
    assert na[5].tolist() == [5.0, 5.0, 2.0]  # visual_to_audio: (1 + 3) / 2
    assert na[0].tolist() == [0.0, 5.0, 2.0]
