"""Equations of the paper (Rao, Khalil, Li, Dai, Lu, ECCV 2022) that no other test pins down,
each against a small dense reference written from the formula with the module's own weights:
the TCN (eqs 5-6), the DPBlock's order (eq 7), the stem with W_a and the input standardisation,
the gate and fusion (eqs 9-10), the classifier (eq 11), and where the RGCT's dropout acts (eq 16).
(The RGCT's eqs 12-16 otherwise: tests/test_rgct.py; MIL pooling: tests/test_dpnet.py.)"""

from __future__ import annotations

import pytest
import torch

from avel_dgl import graph
from avel_dgl.config import get_preset, replace
from avel_dgl.nn.dpnet import DPNet, build
from avel_dgl.nn.rgct import RGCT
from avel_dgl.nn.tcn import TCN
from avel_dgl.nn.variants import innermost


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def dense_conv_swish(conv: torch.nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """Eqs 5-6 for one modality, segment by segment: Swish(sum_k W_k x_{t+k-p} + b), zeros beyond
    the clip's ends (p = k // 2). x (B, T, in) -> (B, T, out)."""
    b, t, _ = x.shape
    k = conv.weight.shape[2]
    p = k // 2
    out = torch.zeros(b, t, conv.weight.shape[0])
    for s in range(t):
        acc = conv.bias.expand(b, -1).clone()
        for j in range(k):
            if 0 <= s + j - p < t:
                acc = acc + x[:, s + j - p] @ conv.weight[:, :, j].T
        out[:, s] = swish(acc)
    return out


def test_tcn_is_a_convolution_per_modality_then_swish():  # eqs 5-6
    torch.manual_seed(0)
    tcn = TCN(4, 3, kernel_size=3)
    audio, visual = torch.randn(2, 6, 4), torch.randn(2, 6, 4)
    a, v = tcn(audio, visual)
    torch.testing.assert_close(a, dense_conv_swish(tcn.audio, audio))
    torch.testing.assert_close(v, dense_conv_swish(tcn.visual, visual))


def tiny(**overrides):
    base = {"model.width": 8, "model.blocks": 2, "model.norm": "none", "model.input_dropout": 0.0,
            "model.classifier_dropout": 0.0}
    return replace(get_preset("small"), **{**base, **overrides})


def test_dpblock_runs_the_rgct_then_the_tcn():  # eq 7
    torch.manual_seed(0)
    model = build(tiny(), graph.DEFAULT_KERNEL).eval()
    block = model.blocks[1]  # keeps the width, so the other order would run as well
    g = graph.batch_graph(2)
    a, v = torch.randn(2, 10, 8), torch.randn(2, 10, 8)
    rgct = innermost(block.rgct)  # the RGCT on nodes, inside its GraphLayer
    ra, rv = rgct(g, a.reshape(20, 8), v.reshape(20, 8))
    want = innermost(block.tcn)(ra.view(2, 10, 8), rv.view(2, 10, 8))
    for got, ref in zip(block(g, a, v), want):
        torch.testing.assert_close(got, ref)


def test_dpnet_stem_gate_fusion_and_classifier_match_the_equations():  # W_a, eqs 9-11
    torch.manual_seed(0)
    model = build(tiny(), graph.DEFAULT_KERNEL).eval()
    assert isinstance(model, DPNet)
    audio, visual = torch.randn(3, 10, 128), torch.randn(3, 10, 512)
    # training-split statistics, far from identity, so the order of standardisation and W_a matters
    model.audio_norm.set_stats(3 + 2 * torch.randn(50, 128))
    model.visual_norm.set_stats(-1 + 4 * torch.randn(50, 512))
    g = graph.batch_graph(3)
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[1:]))
    model.blocks[-1].register_forward_hook(lambda module, args, out: seen.append(out))
    logits = model(g, audio, visual)
    (a0, v0), (a, v) = seen
    # stem: audio standardised, then W_a (128 -> 512); visual standardised
    torch.testing.assert_close(a0, ((audio - model.audio_norm.mean) / model.audio_norm.std) @ model.audio_fc.weight.T
                               + model.audio_fc.bias)
    torch.testing.assert_close(v0, (visual - model.visual_norm.mean) / model.visual_norm.std)
    w = a.shape[-1]
    gate_w, gate_b = model.gate.weight, model.gate.bias
    gate = torch.sigmoid(a @ gate_w[:, :w].T + v @ gate_w[:, w:].T + gate_b)  # eq 9: F = sigmoid(W_G [a; v])
    fused = gate * a + (1 - gate) * v  # eq 10: F weighs the audio features
    want = fused @ model.classifier.weight.T + model.classifier.bias  # eq 11 before the softmax
    torch.testing.assert_close(logits, want)


@pytest.mark.parametrize("linked", [False, True])
def test_rgct_dropout_acts_on_the_aggregate_only(linked):  # eq 16
    """n' = Swish(W_2(Swish(W_1 n) + Dropout(NA))): with the dropout dropping everything, a
    training-mode RGCT computes the update without any neighbourhood, Swish(W_2 Swish(W_1 n))."""
    torch.manual_seed(0)
    layer = RGCT(6, 5, dropout=1.0, kernel=graph.DEFAULT_KERNEL).train()
    g = graph.batch_graph(2 if linked else 1, linked=linked)
    n = g.num_nodes(graph.AUDIO)
    audio, visual = torch.randn(n, 6), torch.randn(n, 6)
    a, v = layer(g, audio, visual)
    for got, h in ((a, audio), (v, visual)):
        torch.testing.assert_close(got, swish(layer.fc2(swish(layer.fc1(h)))))
    # and in eval mode the aggregate is back (the neighbourhood changes the result)
    a_eval, _ = layer.eval()(g, audio, visual)
    assert not torch.allclose(a_eval, a)
