"""Checkpoints written before the DPBlock class still load. tests/fixtures/state_dict_layout_1beb270.json
was written by the code of commit 1beb270 (tests/fixtures/write_layout_1beb270.py): for every
variant and option combination, each state_dict tensor's name, shape and sum at seed 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avel_dgl import graph
from avel_dgl.checkpoint import upgrade_weights
from avel_dgl.engine import load_model
from avel_dgl.config import Config
from avel_dgl.nn.dpnet import build
from avel_dgl.nn.variants import innermost
from helpers import CPU

LAYOUT = json.loads((Path(__file__).parent / "fixtures" / "state_dict_layout_1beb270.json").read_text())["cases"]


@pytest.mark.parametrize("case", list(LAYOUT))
def test_old_names_map_onto_todays_network_in_order_with_the_same_initial_values(case):
    config = Config.from_dict(LAYOUT[case]["config"])
    old = LAYOUT[case]["tensors"]
    torch.manual_seed(0)
    today = build(config, graph.DEFAULT_KERNEL).state_dict()
    renamed = upgrade_weights({name: name for name in old}, config)  # new name -> old name
    # the same tensors in the same order: parameters() order is what an optimizer's state follows
    assert list(renamed) == list(today)
    for new, old_name in renamed.items():
        shape, total = old[old_name]
        assert list(today[new].shape) == shape, new
        # same seed, same values: initialisation and its order are unchanged
        assert today[new].double().sum().item() == pytest.approx(total, rel=1e-9, abs=1e-9), new


def test_a_checkpoint_in_the_old_layout_loads_with_every_tensor_in_its_place(tmp_path):
    case = LAYOUT["dpnet/layer/residual"]
    gen = torch.Generator().manual_seed(1)
    weights = {name: torch.randn(shape, generator=gen) for name, (shape, _) in case["tensors"].items()}
    path = tmp_path / "old.pt"
    torch.save({"version": "0.1.0", "config": case["config"], "classes": 29, "model": weights,
                "epoch": 3, "val_acc": 0.5}, path)
    model, config, _ = load_model(path, CPU)
    assert config.model.variant == "dpnet" and config.model.blocks == 2
    first_rgct = innermost(model.blocks[0].rgct)  # Normed(GraphLayer(RGCT)): the first layer changes the width
    torch.testing.assert_close(first_rgct.query["audio"].weight, weights["layers.0.layer.layer.query.audio.weight"])
    torch.testing.assert_close(model.blocks[0].rgct.audio_norm.weight, weights["layers.0.audio_norm.weight"])
    second_tcn = innermost(model.blocks[1].tcn)  # Normed(Residual(StreamLayer(TCN)))
    torch.testing.assert_close(second_tcn.visual.weight, weights["layers.3.layer.layer.layer.visual.weight"])
    torch.testing.assert_close(model.classifier.weight, weights["classifier.weight"])
