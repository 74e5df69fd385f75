"""DPNet and the training loop: shapes, gradients, overfitting, SEL/WSEL learning, the CLI."""

import json

import pytest
import torch
from click.testing import CliRunner

from avel_dgl import engine, graph
from avel_dgl.config import get_preset, replace
from avel_dgl.data.dataset import SplitData, load_split
from avel_dgl.format import N_CLASSES
from avel_dgl.nn.dpnet import DPBlock, DPNet, build, perspective_layers
from avel_dgl.nn.tcn import TCN
from avel_dgl.nn.variants import innermost
from avel_dgl.train import lr_multiplier, train_run
from cli.main import main
from helpers import CPU


def tiny_config(**overrides):
    """The small preset, tiny, with the paper's plain structure (no extra norm or dropout, no replicas)."""
    base = {"model.width": 16, "model.blocks": 1, "train.epochs": 2, "train.batch_size": 16, "model.norm": "none",
            "model.input_dropout": 0.0, "model.classifier_dropout": 0.0, "train.replicate": False}
    return replace(get_preset("small"), **{**base, **overrides})


def random_batch(b=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, 10, 128, generator=gen), torch.randn(b, 10, 512, generator=gen)


def test_dpnet_is_graph_first_blocks_and_outputs_29_classes_per_segment():
    config = tiny_config(**{"model.blocks": 3})
    model = build(config, graph.DEFAULT_KERNEL)
    assert isinstance(model, DPNet) and [type(block) for block in model.blocks] == [DPBlock] * 3  # eq 8
    kinds = [type(innermost(layer)).__name__ for layer in perspective_layers(model)]
    assert kinds == ["RGCT", "TCN"] * 3  # eq 7: RGCT then TCN
    audio, visual = random_batch()
    logits = model(graph.batch_graph(3), audio, visual)
    assert logits.shape == (3, 10, N_CLASSES)


def test_small_preset_adds_the_measured_regularisation_to_the_same_structure():
    m, t = get_preset("small").model, get_preset("small").train
    assert (m.variant, m.kernel_size, m.dropout) == ("dpnet", 3, 0.2)
    assert (m.norm, m.input_dropout, m.classifier_dropout, t.input_norm) == ("layer", 0.5, 0.5, "standardize")
    model = build(get_preset("small"), graph.DEFAULT_KERNEL)
    assert [type(innermost(layer)).__name__ for layer in perspective_layers(model)] == ["RGCT", "TCN"] * m.blocks


def test_paper_preset_transcribes_section_4():
    config = get_preset("paper")
    m, t = config.model, config.train
    assert (m.blocks, m.width, m.dropout, m.kernel_size, t.batch_size) == (4, 768, 0.2, 3, 48)
    assert (t.cycle_epochs, t.lr_floors, t.epochs) == (20, ((0, 0.1), (300, 0.01)), 400)
    assert t.replicate and t.link


def test_lr_schedule_cycles_every_20_epochs_with_floors():
    floors = ((0, 0.1), (300, 0.01))
    assert lr_multiplier(0, 20, floors) == pytest.approx(1.0)
    assert lr_multiplier(10, 20, floors) == pytest.approx(0.55)
    assert lr_multiplier(19.999, 20, floors) == pytest.approx(0.1, abs=1e-6)
    assert lr_multiplier(20, 20, floors) == pytest.approx(1.0)  # warm restart
    assert lr_multiplier(310, 20, floors) == pytest.approx(0.505)
    assert lr_multiplier(319.999, 20, floors) == pytest.approx(0.01, abs=1e-6)


def test_tcn_keeps_length_and_uses_separate_weights_per_modality():
    tcn = TCN(8, 8, kernel_size=3)
    a, v = tcn(torch.randn(2, 10, 8), torch.randn(2, 10, 8))
    assert a.shape == v.shape == (2, 10, 8)
    assert tcn.audio.weight.data_ptr() != tcn.visual.weight.data_ptr()


def test_gradients_reach_every_parameter():
    model = build(tiny_config(**{"model.blocks": 2}), graph.DEFAULT_KERNEL)
    audio, visual = random_batch()
    logits = model(graph.batch_graph(3), audio, visual)
    engine.sel_loss(logits, torch.randint(0, N_CLASSES, (3, 10))).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_wsel_loss_pools_segment_probabilities_by_mean():
    logits = torch.randn(2, 10, N_CLASSES)
    probs = torch.softmax(logits, -1).mean(1)
    labels = torch.tensor([3, 28])
    expected = -(probs[0, 3].log() + probs[1, 28].log()) / 2
    torch.testing.assert_close(engine.wsel_loss(logits, labels), expected)


def fit(model, data, config, epochs):
    optim = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: 1.0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        engine.train_one_epoch(model, data, optim, sched, config.train, gen)
    return engine.evaluate(model, data, 64)["acc"]


def _labelled_split(n: int = 4) -> SplitData:
    """Tiny random features; every video its own segment labels and video label."""
    gen = torch.Generator().manual_seed(0)
    return SplitData(torch.randn(n, 10, 128, generator=gen), torch.randn(n, 10, 512, generator=gen),
                     torch.randint(0, N_CLASSES, (n, 10), generator=gen), torch.arange(n) + 3, torch.arange(n))


def _losses_seen(monkeypatch) -> list:
    """(segment labels, video labels) of every loss the training loop computes."""
    seen, loss = [], engine.task_loss

    def watch(task, logits, segment_labels, video_labels):
        seen.append((segment_labels.cpu().clone(), video_labels.cpu().clone()))
        return loss(task, logits, segment_labels, video_labels)

    monkeypatch.setattr(engine, "task_loss", watch)
    return seen


@pytest.mark.parametrize("task", ["sel", "wsel"])
def test_the_loss_gets_the_batchs_own_labels_and_the_replicas_repeat_the_originals(task, monkeypatch):
    """SEL with Replicate: B videos then their B replicas, the replicas with their originals'
    segment labels in the same order. WSEL: each video's own video label."""
    data = _labelled_split()
    config = tiny_config(**{"train.batch_size": 2, "train.task": task})
    model = build(config, graph.DEFAULT_KERNEL)
    optim = torch.optim.Adam(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: 1.0)
    batches = []

    def replicas(index):
        batches.append(index.clone())
        return torch.zeros(len(index), 10, 128), torch.zeros(len(index), 10, 512)

    seen = _losses_seen(monkeypatch)
    engine.train_one_epoch(model, data, optim, sched, config.train, torch.Generator().manual_seed(0),
                           replicas if task == "sel" else None)
    if task == "sel":
        assert len(seen) == len(batches) == 2
        for (segment_labels, _), index in zip(seen, batches):
            assert torch.equal(segment_labels, torch.cat([data.segment_labels[index]] * 2))
    else:
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0)).split(2)
        assert [v.tolist() for _, v in seen] == [data.video_labels[i].tolist() for i in order]


def test_evaluation_runs_the_model_in_eval_mode():
    """Dropout off while evaluating, whatever mode the model was left in by training."""
    model = build(tiny_config(**{"model.input_dropout": 0.5}), graph.DEFAULT_KERNEL)
    modes = []
    model.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    model.train()
    data = _labelled_split()
    first = engine.evaluate(model, data, 2)
    model.train()
    assert engine.evaluate(model, data, 2)["pred"].equal(first["pred"])  # no dropout: the same predictions
    assert modes and not any(modes)


def test_tiny_model_overfits_a_tiny_dataset():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    n = 8
    data = SplitData(torch.randn(n, 10, 128, generator=gen), torch.randn(n, 10, 512, generator=gen),
                     torch.randint(0, N_CLASSES, (n, 10), generator=gen), torch.zeros(n, dtype=torch.long),
                     torch.arange(n))
    config = tiny_config(**{"model.width": 32, "model.dropout": 0.0, "train.lr": 3e-3, "train.batch_size": 8})
    assert fit(build(config, graph.DEFAULT_KERNEL), data, config, epochs=150) >= 0.95


@pytest.mark.parametrize("task", ["sel", "wsel"])
def test_training_learns_clearly_above_chance(ave_dir, tmp_path, task):
    torch.manual_seed(0)
    config = tiny_config(**{"train.task": task, "train.epochs": 8, "model.width": 32, "train.lr": 3e-3})
    results = train_run(config, ave_dir, tmp_path / "run", CPU, progress=False)
    # SEL must beat always-background; WSEL never sees segment labels, so it must beat chance.
    majority = load_split(ave_dir, "test").segment_labels.eq(28).float().mean().item()
    floor = majority + 0.1 if task == "sel" else 1 / N_CLASSES + 0.2
    assert results["test_acc_o-ave"] > floor


def test_run_dir_holds_config_metrics_checkpoints_and_results(ave_dir, tmp_path):
    config = tiny_config()
    results = train_run(config, ave_dir, tmp_path / "run", CPU, progress=False)
    run = tmp_path / "run"
    for name in ("config.json", "metrics.csv", "best.pt", "last.pt", "results.json",
                 "per_class_o-ave.csv", "per_class_c-ave.csv"):
        assert (run / name).is_file(), name
    assert json.loads((run / "results.json").read_text()) == results
    rows = (run / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,") and len(rows) == 1 + config.train.epochs
    val = [float(r.split(",")[4]) for r in rows[1:]]
    assert results["val_acc"] == pytest.approx(max(val), abs=1e-6)  # chosen on validation
    assert results["best_epoch"] == 1 + val.index(max(val))


def test_cli_train_then_evaluate_prints_accuracy_and_table(ave_dir, tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(main, ["train", "--data", str(ave_dir), "--out", str(run), "--epochs", "1",
                                  "--width", "16", "--blocks", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "test acc o-ave" in result.output
    result = runner.invoke(main, ["evaluate", "--split", "c-ave", "--checkpoint", str(run / "best.pt"),
                                  "--data", str(ave_dir)])
    assert result.exit_code == 0, result.output
    assert "test accuracy (c-ave):" in result.output and "background" in result.output
    summary = json.loads((run / "eval_c-ave.json").read_text())
    assert summary["label_set"] == "c-ave" and 0.0 <= summary["accuracy"] <= 1.0
    assert summary["segments"] == 10 * summary["videos"]


def test_cli_rejects_link_without_replicate_in_one_line(ave_dir, tmp_path):
    result = CliRunner().invoke(main, ["train", "--data", str(ave_dir), "--out", str(tmp_path / "r"),
                                       "--no-replicate", "--link"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("avel-dgl: error: --link")



def test_residual_option_adds_identity_paths_where_widths_agree():
    config = tiny_config(**{"model.blocks": 2, "model.residual": True})
    model = build(config, graph.DEFAULT_KERNEL)
    wrapped = [type(layer).__name__ for layer in perspective_layers(model)]
    assert wrapped == ["GraphLayer", "Residual", "Residual", "Residual"]  # the first changes the width
    tcn = model.blocks[0].tcn
    for p in innermost(tcn).parameters():
        torch.nn.init.zeros_(p)  # a zeroed TCN outputs Swish(0) = 0: the block passes its input through
    a, v = torch.randn(2, 10, 16), torch.randn(2, 10, 16)
    out_a, out_v = tcn(graph.batch_graph(2), a, v)
    torch.testing.assert_close(out_a, a)
    torch.testing.assert_close(out_v, v)
