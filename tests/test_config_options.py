"""Options defined once (issue 13): the config options of `train` and `ablate` come from the
fields avel_dgl.config declares with `option` (flag, type, choices, help), and the library's
config errors are keyed by field, worded with dotted fields, which the CLI words as flags."""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass

import click
import pytest
from click.testing import CliRunner

from avel_dgl import graph
from avel_dgl.config import (ModelConfig, TrainConfig, differences, field_names, get_preset, option, option_fields,
                             replace, resolve_config, validate, value)
from avel_dgl.errors import ConfigError, ConfigWarning
from cli.ablate_commands import CELL_FIELDS
from cli.options import config_options, flag, in_flags
from cli.main import main
from helpers import invoke

# The config options `train` had when they were written by hand: none may go missing.
TRAIN_FLAGS = ["--task", "--seed", "--variant", "--epochs", "--batch-size", "--lr", "--optimizer", "--weight-decay",
               "--input-norm", "--width", "--blocks", "--dropout", "--input-dropout", "--classifier-dropout", "--norm",
               "--residual", "--neighbour-norm", "--init", "--replicate", "--link"]


def _squeezed(text: str) -> str:
    """Without whitespace: help text as click wraps it compares with the field's help."""
    return "".join(text.split())


def test_every_option_field_is_an_option_of_train_with_its_help():
    result = invoke(["train", "--help"])
    assert result.exit_code == 0
    help_text = _squeezed(result.stdout)
    fields = option_fields()
    assert sorted(flag(key) for key in fields) == sorted(TRAIN_FLAGS)
    options = {p.opts[0]: p for p in main.commands["train"].params}
    for key, (f, _) in fields.items():
        assert options[flag(key)].help.startswith(f.metadata["help"]), key
        assert _squeezed(f.metadata["help"]) in help_text, key
    assert _squeezed("--residual / --no-residual") in help_text
    assert _squeezed("--task [sel|wsel] sel: segment labels; wsel: video labels only (MIL pooling). [default: sel]") \
        in help_text
    assert _squeezed("--width INTEGER") in help_text and _squeezed("[default: 768 (paper), 128 (small), 768 (large)]") in help_text


def test_ablate_has_every_option_but_the_fields_each_cell_of_the_grid_sets():
    from avel_dgl.grid import COLUMNS, cell_config

    base = get_preset("small")
    set_by_cells = {key for c in COLUMNS for key, *_ in differences(base, cell_config(base, "tcn", c.name, 1))}
    assert set_by_cells == set(CELL_FIELDS)
    params = {p.name for p in main.commands["ablate"].params}
    for key in option_fields():
        assert (key.rpartition(".")[2] in params) == (key not in CELL_FIELDS), key


def _another(v, choices):
    """A value of the same type as v, other than v."""
    if choices:
        return next(c for c in choices if c != v)
    if isinstance(v, bool):
        return not v
    return v + "x" if isinstance(v, str) else v + 1


def _train_config(args: list[str]):
    """The config `train` would run with these arguments (parsed by the command, not run)."""
    params = main.commands["train"].make_context("train", ["--preset", *args]).params
    return resolve_config(params["preset"], params["replicate"], params["link"],
                          **{name: params[name] for name in field_names() if name not in ("replicate", "link")})


@pytest.mark.parametrize("preset", ["small", "paper"])
def test_each_option_sets_its_own_field_and_unset_options_keep_the_preset(preset):
    base = get_preset(preset)
    assert _train_config([preset]) == base
    for key, (f, _) in option_fields().items():
        new = _another(value(base, key), f.metadata["choices"])
        args = [f"--{'' if new else 'no-'}{flag(key)[2:]}"] if isinstance(new, bool) else [flag(key), str(new)]
        # --task wsel also switches replicate and link off (those the preset has on), unless asked for
        also = {k for k in ("train.replicate", "train.link") if value(base, k)} if key == "train.task" else set()
        widened = key == "model.width" and new > base.model.width
        if widened:
            also = {"train.lr"}  # a wider network keeps the preset's lr x width (config.at_width), and says so
        with pytest.warns(ConfigWarning, match="to keep lr x width") if widened else contextlib.nullcontext():
            config = _train_config([preset, *args])
        assert value(config, key) == new and {d[0] for d in differences(base, config)} == {key} | also, args


# A config with one field more, as a contributor would add it: its option, type, choices and
# mapping follow from that one declaration.
@dataclass
class TrainWithWarmup(TrainConfig):
    warmup: str = option("none", "Learning-rate warm-up before the first cycle.", choices=("none", "linear"))
    warmup_epochs: int = option(0, "Epochs of warm-up.")


SECTIONS_PLUS = {"train": TrainWithWarmup, "model": ModelConfig}


def _command(seen: dict) -> click.Command:
    @click.command()
    @config_options(sections=SECTIONS_PLUS)
    def command(**options):
        names = field_names(SECTIONS_PLUS)
        seen.update({names[k]: v for k, v in options.items() if v is not None})
    return command


def test_adding_a_field_is_one_edit():
    seen = {}
    result = CliRunner().invoke(_command(seen), ["--warmup", "linear", "--warmup-epochs", "3", "--no-residual"])
    assert result.exit_code == 0, result.output
    assert seen == {"train.warmup": "linear", "train.warmup_epochs": 3, "model.residual": False}
    help_text = _squeezed(CliRunner().invoke(_command({}), ["--help"]).stdout)
    assert _squeezed("--warmup [none|linear] Learning-rate warm-up before the first cycle.") in help_text
    assert _squeezed("--warmup-epochs INTEGER Epochs of warm-up.") in help_text
    bad = CliRunner().invoke(_command({}), ["--warmup", "cosine"])  # choices come from the field
    assert bad.exit_code == 2 and "'cosine' is not one of 'none', 'linear'" in bad.output


def test_two_fields_with_one_flag_are_refused():
    @dataclass
    class TrainClash(TrainConfig):
        width: int = option(1, "A second width.")

    with pytest.raises(ValueError, match="model.width and train.width would both be --width"):
        field_names({"model": ModelConfig, "train": TrainClash})


# (field, bad value, the problem after "<field>: "); each starts from the valid small preset.
RULES = [
    ("train.task", "strong", "expected one of sel, wsel, found 'strong'"),
    ("train.optimizer", "rmsprop", "expected one of adam, adamw, sgd, found 'rmsprop'"),
    ("train.input_norm", "minmax", "expected one of none, standardize, found 'minmax'"),
    ("model.norm", "batch", "expected one of none, layer, found 'batch'"),
    ("model.init", "xavier", "expected one of swish, torch, found 'xavier'"),
    ("train.epochs", 0, "expected a positive integer, found 0"),
    ("train.batch_size", 0, "expected a positive integer, found 0"),
    ("train.lr", -1.0, "expected a positive number, found -1.0"),
    ("train.lr", math.inf, "expected a positive number, found inf"),
    ("train.weight_decay", -0.1, "expected a number >= 0, found -0.1"),
    ("train.seed", 2**31, f"expected an integer in [0, 2**31), found {2**31}"),
    ("train.cycle_epochs", 0, "expected a positive integer, found 0"),
    ("model.width", 0, "expected a positive integer, found 0"),
    ("model.blocks", 0, "expected a positive integer, found 0"),
    ("model.dropout", 1.0, "expected a probability in [0, 1), found 1.0"),
    ("model.input_dropout", -0.5, "expected a probability in [0, 1), found -0.5"),
    ("model.classifier_dropout", 1.5, "expected a probability in [0, 1), found 1.5"),
    ("model.kernel_size", 4, "expected an odd positive integer, found 4"),
    ("train.link", True, "needs train.replicate (link edges join an original and its replica)"),
]


@pytest.mark.parametrize("key, bad, problem", RULES, ids=[f"{r[0]}={r[1]}" for r in RULES])
def test_validate_raises_a_config_error_keyed_by_the_field(key, bad, problem):
    plain = replace(get_preset("small"), **{"train.replicate": False})  # so that link alone is the fault
    with pytest.raises(ConfigError) as caught:
        validate(replace(plain, **{key: bad}))
    assert (caught.value.field, caught.value.problem) == (key, problem)
    assert str(caught.value) == f"{key}: {problem}" and "--" not in str(caught.value)


def test_an_unknown_variant_is_a_config_error_keyed_by_the_field():
    # nn.dpnet.build checks it: config cannot import the variants (test_variants: rgat's width).
    from avel_dgl.nn.dpnet import build

    with pytest.raises(ConfigError) as caught:
        build(replace(get_preset("small"), **{"model.variant": "nope"}), graph.DEFAULT_KERNEL)
    assert caught.value.field == "model.variant" and str(caught.value).startswith("model.variant: expected one of ")


def test_small_replicates_sel_videos_but_not_wsel_ones_and_never_links():
    """Issue 27: `small` trains SEL with Replicate (the paper's augmentation, +1.3 points here) and
    without Link; WSEL videos have no segment labels to stitch replicas from."""
    sel, wsel, plain = (_train_config(args) for args in (["small"], ["small", "--task", "wsel"],
                                                         ["small", "--no-replicate"]))
    assert (sel.train.replicate, sel.train.link) == (True, False)
    assert (wsel.train.task, wsel.train.replicate, wsel.train.link) == ("wsel", False, False)
    assert differences(sel, plain) == [("train.replicate", True, False)]


def test_train_start_line_says_whether_the_run_replicates(caplog, tmp_path):
    empty = tmp_path / "empty"  # the start line comes before the data are read; then the run stops
    empty.mkdir()
    with caplog.at_level(logging.INFO, logger="avel_dgl"):
        for task in ("sel", "wsel"):
            result = CliRunner().invoke(main, ["train", "--task", task, "--data", str(empty), "--out",
                                               str(tmp_path / task), "--quiet"])
            assert result.exit_code != 0
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("preset ")] == [
        "preset small, task sel, variant dpnet: replicate on, link off",
        "preset small, task wsel, variant dpnet: replicate off, link off"]


def test_replicate_for_wsel_names_the_task_field():
    with pytest.raises(ConfigError) as caught:
        validate(replace(get_preset("small"), **{"train.task": "wsel", "train.replicate": True}))
    assert str(caught.value) == ("train.replicate: only for train.task sel (replicas need segment labels; "
                                 "so is train.link), found train.task wsel")
    assert in_flags(caught.value) == ("--replicate: only for --task sel (replicas need segment labels; "
                                      "so is --link), found --task wsel")


def test_presets_and_replace_raise_config_errors_keyed_by_field():
    with pytest.raises(ConfigError) as caught:
        get_preset("huge")
    assert (caught.value.field, str(caught.value)) == ("preset", "preset: expected one of paper, small, large, found 'huge'")
    with pytest.raises(ConfigError) as caught:
        replace(get_preset("small"), **{"train.warmup": 3})
    assert caught.value.field == "train.warmup"
    assert in_flags(caught.value).startswith("train.warmup: not a config field")  # no flag: kept as it is


def test_the_cli_words_fields_as_flags_and_keeps_fields_without_one():
    assert in_flags(ConfigError("train.batch_size", "expected a positive integer, found 0")) == \
        "--batch-size: expected a positive integer, found 0"
    assert in_flags(ConfigError("model.kernel_size", "expected an odd positive integer, found 4")) == \
        "model.kernel_size: expected an odd positive integer, found 4"  # no option sets it
    assert in_flags(ConfigWarning("train.lr", "1 at model.width 768 and model.kernel_size 3")) == \
        "--lr: 1 at --width 768 and model.kernel_size 3"


def test_a_bad_option_is_one_line_naming_the_flag(tmp_path):
    result = invoke(["train", "--data", tmp_path / "data", "--out", tmp_path / "run", "--lr", "-1"])
    assert result.exit_code == 2
    assert result.stderr == "avel-dgl: error: --lr: expected a positive number, found -1.0\n"
    assert not (tmp_path / "run").exists()


def test_a_config_warning_names_flags_on_the_command_line(tmp_path):
    # small's lr 1e-3 asked for at width 768; the missing data folder then stops the run.
    result = invoke(["train", "--data", tmp_path / "data", "--out", tmp_path / "run", "--width", "768", "--lr", "1e-3"])
    lines = result.stderr.splitlines()
    assert lines[0].startswith("avel-dgl: warning: --lr: 0.001 at --width 768: Adam steps this large")
    assert "train.lr" not in result.stderr and lines[1].startswith("avel-dgl: error: ")
    # Without --lr the preset's rate is scaled to the width, and the warning says so.
    result = invoke(["train", "--data", tmp_path / "data", "--out", tmp_path / "run", "--width", "768"])
    assert result.stderr.splitlines()[0] == ("avel-dgl: warning: --lr: 0.001 is preset small's for --width 128; at "
                                             "--width 768 it is scaled to 0.000167 to keep lr x width (set --lr to choose)")
