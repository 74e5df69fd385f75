"""The Table 3 variants: each builds, runs forward and backward (plain and linked batches),
trains a couple of steps, has the layer order its name says, and is sized like the DPNet."""

from __future__ import annotations

import pytest
import torch

from avel_dgl import engine, graph
from avel_dgl.config import get_preset, replace
from avel_dgl.data.dataset import load_split
from avel_dgl.format import N_CLASSES
from avel_dgl.nn.dpnet import VARIANTS, DPNet, build, perspective_layers, uses_graph
from avel_dgl.nn.variants import (ParallelLayer, backbone_params, layer_kind, matched_depth, rgat_layer, rgct_layer,
                                  tcn_layer)

TINY = {"model.width": 16, "model.blocks": 2, "train.batch_size": 8}


def tiny(variant: str, **overrides):
    return replace(get_preset("small"), **{**TINY, "model.variant": variant, **overrides})


def kinds(variant: str, **overrides) -> list[str]:
    m = tiny(variant, **overrides).model
    model = DPNet(m, VARIANTS[variant](m, graph.DEFAULT_KERNEL))
    return [layer_kind(layer) for layer in perspective_layers(model)]


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("linked", [False, True])
def test_variant_forward_and_backward(variant, linked):
    torch.manual_seed(0)
    model = build(tiny(variant), graph.DEFAULT_KERNEL)
    videos = 4
    audio, visual = torch.randn(videos, 10, 128), torch.randn(videos, 10, 512)
    logits = model(graph.batch_graph(videos, linked=linked), audio, visual)
    assert logits.shape == (videos, 10, N_CLASSES)
    engine.sel_loss(logits, torch.randint(0, N_CLASSES, (videos, 10))).backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    # the gradient reaches the first backbone layer, through every layer of the stack
    first = [p.grad for p in perspective_layers(model)[0].parameters()]
    assert first and any(g.abs().sum() > 0 for g in first)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_trains_a_few_steps(variant, ave_dir):
    """Two SEL steps through the project's one training loop (WSEL runs in the ablate tests)."""
    torch.manual_seed(0)
    config = tiny(variant)
    data = load_split(ave_dir, "train").subset(torch.arange(16))  # two batches of 8
    model = build(config, graph.DEFAULT_KERNEL)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    stats = engine.train_one_epoch(model, data, optimizer, scheduler, config.train, torch.Generator().manual_seed(0))
    assert torch.isfinite(torch.tensor(stats["loss"]))
    assert scheduler.last_epoch == 2  # two optimizer steps
    changed = [not torch.equal(b, p) for b, p in zip(before, model.parameters())]
    assert sum(changed) >= len(changed) // 2  # (RGAT's attention kernels are idle on unlinked graphs)


def test_layer_orders_follow_the_names():
    assert kinds("dpnet") == ["RGCT", "TCN", "RGCT", "TCN"]
    assert kinds("dpnet-graph-second") == ["TCN", "RGCT", "TCN", "RGCT"]
    assert kinds("dpnet-parallel") == ["RGCT||TCN", "RGCT||TCN"]
    assert kinds("tcn-rgct") == ["TCN", "TCN", "RGCT", "RGCT"]
    assert kinds("rgct-tcn") == ["RGCT", "RGCT", "TCN", "TCN"]
    for variant, kind in (("rgat", "RGAT"), ("rgct", "RGCT"), ("tcn", "TCN")):
        assert set(kinds(variant)) == {kind}
    assert kinds("dpnet", **{"model.norm": "layer", "model.residual": True}) == ["RGCT", "TCN", "RGCT", "TCN"]


def test_only_the_tcn_variant_has_no_graph():
    assert [v for v in VARIANTS if not uses_graph(tiny(v).model)] == ["tcn"]


@pytest.mark.parametrize("make", [rgat_layer, rgct_layer, tcn_layer])
@pytest.mark.parametrize("width, blocks", [(16, 2), (128, 2), (96, 4)])
def test_matched_depth_is_the_closest_in_parameters_up_to_the_dpnet_depth(make, width, blocks):
    m = tiny("dpnet", **{"model.width": width, "model.blocks": blocks}).model
    target = backbone_params(m, [rgct_layer, tcn_layer] * blocks)
    gap = {d: abs(backbone_params(m, [make] * d) - target) for d in range(1, 2 * blocks + 1)}
    assert gap[matched_depth(m, make, 2 * blocks)] == min(gap.values())
    uncapped = matched_depth(m, make, None)
    gap = {d: abs(backbone_params(m, [make] * d) - target) for d in (uncapped - 1, uncapped, uncapped + 1) if d}
    assert gap[uncapped] == min(gap.values())


def test_parallel_block_averages_its_branches():
    torch.manual_seed(0)
    layer = VARIANTS["dpnet-parallel"](tiny("dpnet-parallel", **{"model.norm": "none"}).model, graph.DEFAULT_KERNEL)[0]
    assert isinstance(layer, ParallelLayer)
    layer.eval()
    g = graph.batch_graph(2)
    audio, visual = torch.randn(2, 10, 512), torch.randn(2, 10, 512)
    (ga, gv), (ta, tv) = (branch(g, audio, visual) for branch in layer.branches)
    a, v = layer(g, audio, visual)
    torch.testing.assert_close(a, (ga + ta) / 2)
    torch.testing.assert_close(v, (gv + tv) / 2)


def test_rgat_rejects_a_width_its_heads_do_not_divide():
    from avel_dgl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^model\.width: the rgat variant needs a multiple of its 4 heads, found 18"):
        build(tiny("rgat", **{"model.width": 18}), graph.DEFAULT_KERNEL)
