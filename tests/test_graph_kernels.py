"""The two eq 12 kernels (DGL message passing, torch sparse product over the same heterograph),
the kernel choice per device, and the device plumbing that can be checked without a GPU."""

from __future__ import annotations

import logging
import os
import sys

import pytest
import torch

from avel_dgl import graph, runtime
from avel_dgl.errors import AvelError
from avel_dgl.runtime import Runtime
from helpers import needs_dgl


def _means_and_grads(g, audio, visual, weights, kernel):
    a, v = audio.clone().requires_grad_(), visual.clone().requires_grad_()
    out = graph.neighbour_means(g, {graph.AUDIO: a, graph.VISUAL: v}, kernel=kernel)
    loss = sum((out[nt] * weights[nt]).sum() for nt in graph.NODE_TYPES)
    grad_a, grad_v = torch.autograd.grad(loss, (a, v))
    return out[graph.AUDIO], out[graph.VISUAL], grad_a, grad_v


@needs_dgl
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


def _recorded_means(g, kernel, order=None):
    """Run graph.relational_update with a cross reducer that records what it receives.
    Audio node t carries t, visual node t carries 100 + t, so every relation's mean names it."""
    t = g.num_nodes(graph.AUDIO)
    feats = {graph.AUDIO: torch.arange(t, dtype=torch.float32)[:, None],
             graph.VISUAL: 100 + torch.arange(t, dtype=torch.float32)[:, None]}
    received = {}

    def record(ntype, means):
        received[ntype] = [m[:, 0].tolist() for m in means]
        return torch.stack(means, 1)
    graph.relational_update(g, feats, record, kernel=kernel)
    return received


@pytest.mark.parametrize("kernel", [pytest.param("dgl", marks=needs_dgl), "torch"])
def test_cross_reducer_receives_the_relations_in_relations_into_order(kernel):
    got = _recorded_means(graph.video_graph(), kernel)
    t = 5  # a middle segment: it has a forward and a backward neighbour
    # audio: audio_forward (from t-1), audio_backward (from t+1), visual_to_audio (from visual t)
    assert [m[t] for m in got[graph.AUDIO]] == [t - 1, t + 1, 100 + t]
    # visual: visual_forward, visual_backward, audio_to_visual
    assert [m[t] for m in got[graph.VISUAL]] == [100 + t - 1, 100 + t + 1, t]
    # eq 12 of an empty neighbourhood: the first segment has no forward neighbour, the last no backward
    assert got[graph.AUDIO][0][0] == 0 and got[graph.VISUAL][1][9] == 0  # [relation][node]


@needs_dgl
def test_dgl_gives_a_callable_cross_reducer_the_order_of_the_dict():
    """The premise of the DGL kernel: DGL 2.1 does not reorder the per-relation results for a
    callable cross reducer (its built-in 'stack' sorts them by edge type id instead)."""
    import dgl.function as fn

    g = graph.video_graph()
    g.nodes[graph.AUDIO].data["h"] = torch.arange(10, dtype=torch.float32)[:, None]
    g.nodes[graph.VISUAL].data["h"] = 100 + torch.arange(10, dtype=torch.float32)[:, None]
    for order in (graph.RELATIONS_INTO[graph.AUDIO], graph.RELATIONS_INTO[graph.AUDIO][::-1]):
        received = []
        g.multi_update_all({rel: (fn.copy_u("h", "m"), fn.mean("m", "out")) for rel in order},
                           lambda means: received.extend(m[5, 0].item() for m in means) or means[0])
        by_relation = {graph.AUDIO_FORWARD: 4, graph.AUDIO_BACKWARD: 6, graph.VISUAL_TO_AUDIO: 105}
        assert received == [by_relation[rel] for rel in order]


@needs_dgl
@pytest.mark.parametrize("videos,linked", [(3, False), (4, True)])
def test_rgct_kernels_agree_in_values_and_all_gradients(videos, linked):
    """The whole RGCT layer (eqs 12-16) under both kernels: its output and the gradients of the
    inputs and of every parameter agree to 1e-6."""
    from avel_dgl.nn.rgct import RGCT

    torch.manual_seed(videos)
    layer = RGCT(6, 5, dropout=0.0, kernel="dgl")
    g = graph.batch_graph(videos, linked=linked)
    n = g.num_nodes(graph.AUDIO)
    audio, visual, weight = torch.randn(n, 6), torch.randn(n, 6), torch.randn(2 * n, 5)
    results = []
    for kernel in ("dgl", "torch"):
        a, v = audio.clone().requires_grad_(), visual.clone().requires_grad_()
        layer.zero_grad()
        layer.kernel = kernel  # the same weights under each kernel
        out = torch.cat(layer(g, a, v))
        (out * weight).sum().backward()
        results.append([out.detach(), a.grad, v.grad] + [p.grad.clone() for p in layer.parameters()])
    assert len(results[0]) == 3 + len(list(layer.parameters()))
    for x, y in zip(*results):
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


@pytest.mark.parametrize("kernel", [pytest.param("dgl", marks=needs_dgl), "torch"])
def test_sqrt_neighbour_norm_divides_a_linked_pairs_sum_by_sqrt_2(kernel):
    g = graph.batch_graph(2, linked=True)  # video 0 and its replica, video 1 at node offset 10
    audio = torch.arange(20, dtype=torch.float32)[:, None]
    visual = 100 + audio
    na = graph.neighbour_means(g, {graph.AUDIO: audio, graph.VISUAL: visual}, kernel, neighbour_norm="sqrt")
    forward, backward = 0, 1  # RELATIONS_INTO[AUDIO] order: forward, backward, from visual
    root2 = 2 ** 0.5
    torch.testing.assert_close(na[graph.AUDIO][3, :, 0], torch.tensor([(2 + 12) / root2, (4 + 14) / root2,
                                                                        (103 + 113) / root2]))
    torch.testing.assert_close(na[graph.VISUAL][13, :, 0], torch.tensor([(112 + 102) / root2, (114 + 104) / root2,
                                                                         (13 + 3) / root2]))
    assert na[graph.AUDIO][0, forward].item() == 0 and na[graph.VISUAL][19, backward].item() == 0


@pytest.mark.parametrize("kernel", [pytest.param("dgl", marks=needs_dgl), "torch"])
def test_sqrt_neighbour_norm_is_the_mean_without_link_edges(kernel):
    """Every node of an unlinked batch has at most one neighbour per relation, where sum / sqrt(1)
    is the mean: the option changes nothing for a network trained or tested without Link."""
    g = graph.batch_graph(3)
    gen = torch.Generator().manual_seed(0)
    feats = {nt: torch.randn(30, 4, generator=gen) for nt in graph.NODE_TYPES}
    mean = graph.neighbour_means(g, feats, kernel)
    root = graph.neighbour_means(g, feats, kernel, neighbour_norm="sqrt")
    for nt in graph.NODE_TYPES:
        torch.testing.assert_close(root[nt], mean[nt], atol=0, rtol=0)


def test_neighbour_norm_option_reaches_every_rgct_of_a_built_network():
    from avel_dgl import config
    from avel_dgl.nn import dpnet
    from avel_dgl.nn.rgct import RGCT

    c = config.replace(config.get_preset("small"), **{"model.neighbour_norm": "sqrt"})
    layers = [m for m in dpnet.build(c, graph.DEFAULT_KERNEL).modules() if isinstance(m, RGCT)]
    assert len(layers) == c.model.blocks and {m.neighbour_norm for m in layers} == {"sqrt"}
    torch.manual_seed(0)
    g = graph.batch_graph(2, linked=True)
    a, v = torch.randn(20, 8), torch.randn(20, 8)
    rgct = RGCT(8, 4, dropout=0.0, kernel=graph.DEFAULT_KERNEL)
    by_mean = torch.cat(rgct(g, a, v))
    rgct.neighbour_norm = "sqrt"
    assert not torch.allclose(torch.cat(rgct(g, a, v)), by_mean)  # linked: the layer sees the change


@pytest.mark.parametrize("layer", ["RGCT", "RGAT"])
def test_graph_layers_take_their_kernel_in_the_constructor_with_no_default(layer):
    """No layer runs a kernel it was not given (nn/dpnet.build gives every layer the process's);
    a wrong name fails at construction, and the kernel is no tensor of the state_dict."""
    from avel_dgl.nn.rgat import RGAT
    from avel_dgl.nn.rgct import RGCT

    make = {"RGCT": RGCT, "RGAT": RGAT}[layer]
    with pytest.raises(TypeError, match="kernel"):
        make(4, 4)
    with pytest.raises(ValueError, match="kernel: expected 'dgl' or 'torch', found 'DGL'"):
        make(4, 4, kernel="DGL")
    for kernel in graph.KERNELS:
        made = make(4, 4, kernel=kernel)
        assert made.kernel == kernel and not any("kernel" in name for name in made.state_dict())


def test_mean_matrix_is_built_once_per_graph_and_device():
    g = graph.batch_graph(3)
    assert graph.mean_matrix(g, "cpu") is graph.mean_matrix(g, torch.device("cpu"))
    assert graph.mean_matrix(g, "cpu").device.type == "cpu"


@needs_dgl
def test_kernel_choice_per_device_and_logged_once(caplog):
    runtime._resolve.cache_clear()
    with caplog.at_level(logging.INFO, logger="avel_dgl.runtime"):
        assert runtime.resolve_kernel("auto", "cpu") == "dgl"
        assert runtime.resolve_kernel("auto", "cpu") == "dgl"
        assert runtime.resolve_kernel("torch", "cpu") == "torch"
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["graph kernel for eq 12 on cpu: dgl (DGL supports this device)",
                     "graph kernel for eq 12 on cpu: torch (as asked)"]
    # PyPI's DGL has no CUDA: auto falls back to torch, and asking for DGL there is a user error.
    if not runtime.dgl_supports("cuda"):
        assert runtime.resolve_kernel("auto", "cuda") == "torch"
        with pytest.raises(AvelError, match="--kernel dgl: .* cannot run on cuda"):
            runtime.resolve_kernel("dgl", "cuda")
    with pytest.raises(AvelError, match="--kernel: expected one of auto, dgl, torch, found 'fast'"):
        Runtime.create("cpu", "fast")


def test_without_dgl_auto_runs_the_torch_kernel_with_one_notice_and_dgl_is_an_error(monkeypatch, capsys, caplog):
    """Where `import dgl` fails (graph.dgl None): --kernel auto is the torch kernel on every
    device, said once on stderr; --kernel dgl is one clear error."""
    monkeypatch.setattr(graph, "dgl", None)
    monkeypatch.setattr(graph, "DGL_MISSING", "ImportError: no wheel")
    monkeypatch.delenv("RANK", raising=False)  # rank 0, the one that gives the notice
    runtime._resolve.cache_clear()
    runtime.dgl_supports.cache_clear()
    try:
        with caplog.at_level(logging.INFO, logger="avel_dgl.runtime"):
            assert [runtime.resolve_kernel("auto", "cpu") for _ in range(2)] == ["torch", "torch"]
            assert runtime.resolve_kernel("torch", "cpu") == "torch"
        err = capsys.readouterr().err
        assert err.splitlines() == [
            "avel-dgl: notice: eq 12 runs on the torch kernel: DGL does not import here (ImportError: no wheel)"], \
            (err, os.environ.get("RANK"), sys.stderr)
        assert [r.getMessage() for r in caplog.records] == ["graph kernel for eq 12 on cpu: torch (DGL does not import)",
                                                            "graph kernel for eq 12 on cpu: torch (as asked)"]
        with pytest.raises(AvelError) as e:
            runtime.resolve_kernel("dgl", "cpu")
        assert str(e.value) == "--kernel dgl: DGL does not import here (ImportError: no wheel); use --kernel torch or auto"
    finally:
        runtime._resolve.cache_clear()
        runtime.dgl_supports.cache_clear()


def test_runtime_resolves_once_and_takes_torchrun_rank(monkeypatch):
    assert Runtime.create("cpu", "torch") == Runtime(torch.device("cpu"), "torch", 0, 1)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    made = Runtime.create("cpu")
    assert (made.kernel, made.rank, made.world_size, made.is_main) == (graph.DEFAULT_KERNEL, 1, 2, False)
    with pytest.raises(ValueError, match="resolved kernel"):
        Runtime(torch.device("cpu"), "auto")


def test_torch_kernel_graph_stays_the_cpu_template_on_a_gpu_device():
    # No CUDA needed: with the torch kernel the DGL graph is never moved; only its matrix is.
    g = graph.batch_graph(4)
    assert graph.graph_for(g, "cuda", "torch") is g
    assert graph.graph_for(g, "cpu", "dgl") is g  # DGL's kernel on the CPU: the template itself


def test_resolve_device(monkeypatch):
    assert runtime.resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(AvelError, match="--device cuda: torch sees no CUDA device"):
        runtime.resolve_device("cuda")
    with pytest.raises(AvelError, match="--device: expected one of auto, cpu, cuda, found 'tpu'"):
        runtime.resolve_device("tpu")
    # Under torchrun each process takes the GPU of its local rank.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert runtime.resolve_device("auto") == torch.device("cuda", 1)
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(AvelError, match="process 2 on this machine needs GPU 2, found 2 GPUs"):
        runtime.resolve_device("cuda")


def test_training_steps_copy_nothing_back_to_the_host(ave_dir, monkeypatch):
    """With the torch kernel (the one a GPU gets), count the calls that copy a tensor to the host,
    made by our code or DGL's: they must not grow with the number of steps."""
    import sys

    from avel_dgl import engine
    from avel_dgl.config import get_preset, replace
    from avel_dgl.data.dataset import load_split
    from avel_dgl.nn.dpnet import build
    from avel_dgl.train import make_optimizer, make_scheduler

    transfers = []

    def counting(name):
        original = getattr(torch.Tensor, name)

        def method(self, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            # torch.optim reads its step counters with .item(); they live on the CPU by design.
            if "torch/optim" not in caller:
                transfers.append((name, caller))
            return original(self, *args, **kwargs)
        return method

    for name in ("item", "cpu", "tolist", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    config = replace(get_preset("small"), **{"model.width": 8, "model.blocks": 1, "train.batch_size": 4})
    data = load_split(ave_dir, "train")
    counts = []
    # The first epoch builds the batch-of-4 graph and its matrix (once per shape, not counted);
    # then an epoch of one step, and one of three.
    for videos in (4, 4, 12):
        model = build(config, "torch")
        optimizer = make_optimizer(model, config)
        transfers.clear()
        engine.train_one_epoch(model, data.subset(torch.arange(videos)), optimizer,
                               make_scheduler(optimizer, config, 3), config.train, torch.Generator())
        counts.append(len(transfers))
    # Once per epoch, the combined metrics; never per step. (The finite-loss check is a sync of
    # one flag, not counted here.)
    assert counts[1:] == [1, 1], transfers


@needs_dgl
@pytest.mark.parametrize("variant", ["dpnet-parallel", "rgat"])
def test_build_gives_every_graph_layer_its_kernel_and_the_same_weights(variant, monkeypatch):
    """build(config, kernel): each graph layer runs the kernel it was given (counted where the torch
    kernel's own code runs), and the kernel is no weight, so both builds have one state_dict."""
    from avel_dgl.config import get_preset, replace
    from avel_dgl.nn.dpnet import build
    from avel_dgl.nn.rgat import RGAT
    from avel_dgl.nn.rgct import RGCT

    config = replace(get_preset("small"), **{"model.variant": variant, "model.width": 8, "model.blocks": 1})
    calls = []
    means, aggregate = graph._neighbour_means_torch, RGAT._aggregate_torch
    monkeypatch.setattr(graph, "_neighbour_means_torch", lambda *a: calls.append("rgct") or means(*a))
    monkeypatch.setattr(RGAT, "_aggregate_torch", lambda self, *a: calls.append("rgat") or aggregate(self, *a))
    audio, visual = torch.randn(2, 10, 128), torch.randn(2, 10, 512)
    per_layer = {RGCT: 1, RGAT: 6}  # torch-kernel calls per forward: RGAT's runs per relation received
    models = {}
    for kernel in ("dgl", "torch"):
        torch.manual_seed(0)
        models[kernel] = build(config, kernel).eval()
        calls.clear()
        models[kernel](graph.batch_graph(2), audio, visual)
        layers = [m for m in models[kernel].modules() if isinstance(m, (RGCT, RGAT))]
        assert layers and len(calls) == (0 if kernel == "dgl" else sum(per_layer[type(m)] for m in layers))
    dgl_state, torch_state = models["dgl"].state_dict(), models["torch"].state_dict()
    assert dgl_state.keys() == torch_state.keys()
    assert all(torch.equal(dgl_state[k], torch_state[k]) for k in dgl_state)
