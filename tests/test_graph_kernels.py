"""The two eq 12 kernels (DGL message passing, torch sparse product over the same heterograph),
the kernel choice per device, and the device plumbing that can be checked without a GPU."""

from __future__ import annotations

import logging

import pytest
import torch

from avel_dgl import graph
from avel_dgl.errors import AvelError


def _means_and_grads(g, audio, visual, weights, kernel):
    a, v = audio.clone().requires_grad_(), visual.clone().requires_grad_()
    out = graph.neighbour_means(g, {graph.AUDIO: a, graph.VISUAL: v}, kernel=kernel)
    loss = sum((out[nt] * weights[nt]).sum() for nt in graph.NODE_TYPES)
    grad_a, grad_v = torch.autograd.grad(loss, (a, v))
    return out[graph.AUDIO], out[graph.VISUAL], grad_a, grad_v


@pytest.mark.parametrize("videos,linked", [(1, False), (5, False), (6, True)])
def test_kernels_agree_forward_and_gradients(videos, linked):
    g = graph.batch_graph(videos, linked=linked)
    gen = torch.Generator().manual_seed(videos)
    n, d = g.num_nodes(graph.AUDIO), 7
    audio, visual = torch.randn(n, d, generator=gen), torch.randn(n, d, generator=gen)
    weights = {nt: torch.randn(n, 3, d, generator=gen) for nt in graph.NODE_TYPES}
    by_dgl = _means_and_grads(g, audio, visual, weights, "dgl")
    by_torch = _means_and_grads(g, audio, visual, weights, "torch")
    for x, y in zip(by_dgl, by_torch):
        assert x.shape == y.shape
        torch.testing.assert_close(y, x, atol=1e-6, rtol=0)


def test_torch_kernel_computes_eq12_on_a_linked_pair():
    # Originals then replicas: video 0 and its replica, video 1 at node offset 10 (T = 10).
    g = graph.batch_graph(2, linked=True)
    audio = torch.arange(20, dtype=torch.float32)[:, None]
    visual = 100 + audio
    na = graph.neighbour_means(g, {graph.AUDIO: audio, graph.VISUAL: visual}, kernel="torch")
    forward, backward, from_visual = 0, 1, 2  # RELATIONS_INTO[AUDIO] order
    # audio segment 3 of the original: forward neighbours are segment 2 of both videos (eqs 1, 17)
    assert na[graph.AUDIO][3, forward].item() == (2 + 12) / 2
    assert na[graph.AUDIO][3, backward].item() == (4 + 14) / 2
    assert na[graph.AUDIO][3, from_visual].item() == (103 + 113) / 2
    # the first segment has no forward neighbour: zeros, as with DGL's mean
    assert na[graph.AUDIO][0, forward].item() == 0
    assert na[graph.VISUAL][19, backward].item() == 0


def test_mean_matrix_is_built_once_per_graph_and_device():
    g = graph.batch_graph(3)
    assert graph.mean_matrix(g, "cpu") is graph.mean_matrix(g, torch.device("cpu"))
    assert graph.mean_matrix(g, "cpu").device.type == "cpu"


def test_kernel_choice_per_device_and_logged_once(caplog):
    graph._resolve.cache_clear()
    with caplog.at_level(logging.INFO, logger="avel_dgl.graph"):
        assert graph.resolve_kernel("cpu", "auto") == "dgl"
        assert graph.resolve_kernel("cpu", "auto") == "dgl"
        assert graph.resolve_kernel("cpu", "torch") == "torch"
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["graph kernel for eq 12 on cpu: dgl (DGL supports this device)",
                     "graph kernel for eq 12 on cpu: torch (as asked)"]
    # PyPI's DGL has no CUDA: auto falls back to torch, and asking for DGL there is a user error.
    if not graph.dgl_supports("cuda"):
        assert graph.resolve_kernel("cuda", "auto") == "torch"
        with pytest.raises(AvelError, match="--kernel dgl: .* cannot run on cuda"):
            graph.resolve_kernel("cuda", "dgl")
    with pytest.raises(AvelError, match="--kernel: expected one of auto, dgl, torch, found 'fast'"):
        graph.set_kernel("fast")


def test_torch_kernel_graph_stays_the_cpu_template_on_a_gpu_device():
    if graph.dgl_supports("cuda"):
        pytest.skip("this DGL runs on CUDA: the graph moves there instead")
    # No CUDA needed: with the torch kernel the DGL graph is never moved; only its matrix is.
    assert graph.batch_graph(4, device="cuda") is graph.batch_graph(4)
