"""DPNet at the paper's size (width 768, 4 DPBlocks) leaves the start plateau: the guard for the
initialisation of nn/init.py (docs/RESULTS.md, "Paper size"). With PyTorch's default
initialisation the features shrink about 150x through the 8 Swish layers, the logits of every
segment are nearly equal, and the first blocks get gradients below Adam's epsilon."""

import math

import pytest
import torch

from avel_dgl import graph
from avel_dgl.config import get_preset, replace
from avel_dgl.engine import sel_loss
from avel_dgl.nn.dpnet import build
from avel_dgl.nn.init import SWISH_GAIN
from avel_dgl.nn.rgat import RGAT
from avel_dgl.nn.rgct import RGCT
from avel_dgl.nn.tcn import TCN
from avel_dgl.train import make_optimizer

LN_29 = math.log(29)


def prototype_batch(videos: int, seed: int):
    """Easy segment-labelled features: class prototype + noise, one 4-s event per video."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.full((videos, 10), 28)
    classes = torch.randint(0, 28, (videos,), generator=gen)
    for i in range(videos):
        start = int(torch.randint(0, 7, (1,), generator=gen))
        labels[i, start:start + 4] = classes[i]
    audio = torch.randn(29, 128, generator=gen)[labels] + torch.randn(videos, 10, 128, generator=gen)
    visual = torch.randn(29, 512, generator=gen)[labels] + torch.randn(videos, 10, 512, generator=gen)
    return audio, visual, labels


def paper_size(init: str):
    """The `paper` preset as trained without replicas, with the given initialisation."""
    return replace(get_preset("paper"), **{"model.init": init, "train.replicate": False, "train.link": False})


def train_steps(config, audio, visual, labels, steps: int, seed: int):
    torch.manual_seed(seed)
    model = build(config, graph.DEFAULT_KERNEL)
    model.audio_norm.set_stats(audio)  # the preset standardises inputs with the training split's statistics
    model.visual_norm.set_stats(visual)
    optimizer = make_optimizer(model, config)
    g = graph.batch_graph(len(labels))
    for _ in range(steps):
        model.train()
        loss = sel_loss(model(g, audio, visual), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        return model(g, audio, visual)


@pytest.mark.parametrize("seed", [0, 1])
def test_paper_size_leaves_the_start_plateau_in_a_few_steps(seed):
    audio, visual, labels = prototype_batch(6, seed)
    logits = train_steps(paper_size("swish"), audio, visual, labels, steps=6, seed=seed)
    predicted = logits.argmax(-1)
    assert sel_loss(logits, labels).item() < LN_29 - 1.5
    assert predicted.unique().numel() >= 4  # not one class (the background) everywhere
    assert (predicted == labels).float().mean() > 0.6  # the background share is 0.6


def test_paper_size_features_keep_their_scale_through_the_blocks():
    """The cause, measured at initialisation: every layer's output keeps a standard deviation of
    order 1 (PyTorch's default init: 0.007 after the last block), and the first block's weights
    get gradients far above Adam's epsilon (default init: ~1e-10)."""
    audio, visual, labels = prototype_batch(4, 0)
    torch.manual_seed(0)
    model = build(paper_size("swish"), graph.DEFAULT_KERNEL)
    model.audio_norm.set_stats(audio)
    model.visual_norm.set_stats(visual)
    scales = []
    for block in model.blocks:
        block.register_forward_hook(lambda module, args, out: scales.append(min(x.std().item() for x in out)))
    logits = model(graph.batch_graph(4), audio, visual)
    sel_loss(logits, labels).backward()
    assert len(scales) == 4 and min(scales) > 0.3
    first_rgct = next(module for module in model.modules() if isinstance(module, RGCT))
    assert first_rgct.fc1.weight.grad.abs().mean().item() > 1e-6


def test_init_is_an_option_and_configs_without_it_were_torch_initialised():
    from avel_dgl.config import Config, resolve_config

    assert get_preset("paper").model.init == "swish" and get_preset("small").model.init == "torch"
    assert resolve_config("paper", None, None, init="torch").model.init == "torch"
    old = get_preset("paper").to_dict()
    del old["model"]["init"]  # a config.json written before the field existed
    assert Config.from_dict(old).model.init == "torch"
    small = replace(get_preset("small"), **{"model.width": 16})
    torch.manual_seed(0)
    default = build(small, graph.DEFAULT_KERNEL).state_dict()
    torch.manual_seed(0)
    swish = build(replace(small, **{"model.init": "swish"}), graph.DEFAULT_KERNEL).state_dict()
    assert torch.equal(default["classifier.weight"], swish["classifier.weight"])  # untouched by init_swish
    assert not torch.equal(default["audio_fc.weight"], swish["audio_fc.weight"])


def test_each_layer_applies_the_swish_rule_to_its_own_weights():
    """nn/init.py's rule, as each layer's init_swish applies it: std = gain / sqrt(fan_in) with
    the Swish gain g where a weight feeds Swish, g / sqrt(k) where Swish takes a sum of k terms
    (RGCT's W_2: 2; RGAT's W_0 and W_r: 4), unit gain where no Swish follows; zero biases."""
    d = 256
    torch.manual_seed(0)
    rgct, rgat, tcn = RGCT(d, d, kernel=graph.DEFAULT_KERNEL), RGAT(d, d, kernel=graph.DEFAULT_KERNEL), TCN(d, d, 3)
    for layer in (rgct, rgat, tcn):
        layer.init_swish()
    g = SWISH_GAIN
    stds = {"RGCT W_1": (rgct.fc1, g / math.sqrt(d)), "RGCT W_2": (rgct.fc2, g / math.sqrt(2 * d)),
            "RGCT W_Q": (rgct.query[graph.AUDIO], 1 / math.sqrt(d)),
            "RGCT W_K, W_V": (rgct.key_value[graph.VISUAL], 1 / math.sqrt(d)),
            "RGAT W_0": (rgat.root, g / math.sqrt(4 * d)), "RGAT W_r": (rgat.project, g / math.sqrt(4 * d)),
            "TCN": (tcn.audio, g / math.sqrt(3 * d))}
    for name, (module, std) in stds.items():
        assert module.weight.std().item() == pytest.approx(std, rel=0.02), name
        assert not module.bias.any(), name


@pytest.mark.parametrize("variant,checksum", [("dpnet", 2677.319086317189), ("rgat", 2261.927081911923),
                                              ("dpnet-parallel", 2359.994443834)])
def test_swish_initialisation_draws_the_weights_it_drew_before_the_layers_owned_it(variant, checksum):
    """Recorded from the code before issue 24, when nn/init.py initialised every layer itself: the
    layers' own init_swish, called in module order, draw the same values in the same order (a
    sum weighted by each tensor's position in the state_dict)."""
    config = replace(get_preset("small"), **{"model.variant": variant, "model.width": 8, "model.blocks": 2,
                                             "model.init": "swish", "model.norm": "none"})
    torch.manual_seed(0)
    state = build(config, graph.DEFAULT_KERNEL).state_dict()
    total = sum((i + 1) * tensor.double().sum().item() for i, tensor in enumerate(state.values()))
    assert total == pytest.approx(checksum, rel=1e-12)


def test_a_learning_rate_too_large_for_the_width_is_warned_about(recwarn):
    from avel_dgl.config import validate

    for fine in (get_preset("small"), get_preset("paper"), get_preset("large"), replace(get_preset("paper"), **{"train.lr": 3e-4})):
        validate(fine)
    assert not recwarn.list
    with pytest.warns(UserWarning, match=r"^train.lr: 0.001 at model.width 768: .*keep lr x width under 0.3"):
        validate(replace(get_preset("small"), **{"model.width": 768, "model.blocks": 4}))
    validate(replace(get_preset("small"), **{"model.width": 768, "train.optimizer": "sgd"}))  # Adam's rule only
    assert not recwarn.list


def test_a_wider_preset_keeps_its_adam_step_and_leaves_the_plateau(recwarn):
    """`--preset small --width 768` (issue 15: one class for 5 epochs at small's lr 1e-3) gets
    small's lr x width: lr 1e-3 x 128/768, which leaves the plateau in a few steps here and in the
    first epoch on the full-size set (docs/RESULTS.md, Paper size). Narrower widths, other
    optimizers and an explicit --lr keep the rate."""
    from avel_dgl.config import at_width, resolve_config, validate

    with pytest.warns(UserWarning, match=r"^train.lr: 0.001 is preset small's for model.width 128; at model.width "
                                         r"768 it is scaled to 0.000167"):
        wide = resolve_config("small", None, None, width=768, blocks=4)
    assert wide.train.lr == pytest.approx(1e-3 * 128 / 768) and wide.model.width == 768
    assert resolve_config("small", None, None, width=768, lr=1e-3).train.lr == 1e-3
    assert resolve_config("small", None, None, width=16).train.lr == 1e-3
    assert at_width(replace(get_preset("small"), **{"train.optimizer": "sgd"}), 768).train.lr == 1e-3
    validate(wide)
    assert not recwarn.list  # no lr x width warning, nor a scaling warning where the rate was kept
    audio, visual, labels = prototype_batch(6, 0)
    logits = train_steps(wide, audio, visual, labels, steps=6, seed=0)
    assert sel_loss(logits, labels).item() < LN_29 - 1.0
    assert logits.argmax(-1).unique().numel() >= 4


def test_large_is_the_measured_paper_size_recipe_and_leaves_the_plateau():
    """`large` is exactly the configuration measured in docs/RESULTS.md (paper_size.sh's
    paper-reg-torch-init: the paper preset without Replicate and Link, small's dropout, LayerNorm
    and PyTorch's init, 30 epochs), and it leaves the start plateau in a few Adam steps."""
    from avel_dgl.config import differences

    measured = replace(get_preset("paper"), **{
        "train.replicate": False, "train.link": False, "model.input_dropout": 0.5, "model.classifier_dropout": 0.5,
        "model.norm": "layer", "model.init": "torch", "train.epochs": 30})
    assert differences(get_preset("large"), measured) == [("preset", "large", "paper")]
    audio, visual, labels = prototype_batch(6, 0)
    logits = train_steps(get_preset("large"), audio, visual, labels, steps=6, seed=0)
    assert sel_loss(logits, labels).item() < LN_29 - 1.0
    assert logits.argmax(-1).unique().numel() >= 4
