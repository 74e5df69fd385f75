"""`avel-dgl train` and `avel-dgl evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import click
from click.core import ParameterSource

from avel_dgl.config import get_preset, replace
from avel_dgl.errors import AvelError

# Command-line option -> config field. Options left unset keep the preset's value.
OVERRIDES = {
    "task": "train.task", "epochs": "train.epochs", "seed": "train.seed", "batch_size": "train.batch_size",
    "lr": "train.lr", "optimizer": "train.optimizer", "weight_decay": "train.weight_decay",
    "input_norm": "train.input_norm", "variant": "model.variant", "width": "model.width",
    "blocks": "model.blocks", "dropout": "model.dropout", "input_dropout": "model.input_dropout",
    "classifier_dropout": "model.classifier_dropout", "norm": "model.norm", "residual": "model.residual",
}


def resolve_config(preset: str, replicate: bool | None, link: bool | None, **options):
    """The preset with the given options applied. Replicate and link are SEL-only: for WSEL
    they are off unless asked for (which `config.validate` then rejects with a clear message)."""
    config = get_preset(preset)
    config = replace(config, **{OVERRIDES[k]: v for k, v in options.items() if v is not None})
    if config.train.task == "wsel":
        replicate, link = bool(replicate), bool(link)
    return replace(config, **{k: v for k, v in (("train.replicate", replicate), ("train.link", link))
                              if v is not None})


@click.command()
@click.option("--task", type=click.Choice(["sel", "wsel"]), default="sel", show_default=True,
              help="sel: segment labels; wsel: video labels only (MIL pooling).")
@click.option("--data", "data_dir", type=click.Path(path_type=Path),
              help="AVE-format data folder (with --resume: defaults to the run's own).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Run folder to create.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path),
              help="Continue the run in this folder from its last.pt (same config; --epochs may extend it).")
@click.option("--preset", default="small", show_default=True, help="Named config: small (CPU) or paper.")
@click.option("--epochs", type=int, help="Override the preset's epoch count.")
@click.option("--seed", type=int, help="Random seed (default: the preset's, 0).")
@click.option("--batch-size", type=int)
@click.option("--lr", type=float, help="Base learning rate.")
@click.option("--optimizer", type=click.Choice(["adam", "adamw", "sgd"]))
@click.option("--weight-decay", type=float)
@click.option("--input-norm", type=click.Choice(["none", "standardize"]))
@click.option("--variant", help="Network variant (default dpnet; bilstm is the baseline).")
@click.option("--width", type=int)
@click.option("--blocks", type=int)
@click.option("--dropout", type=float)
@click.option("--input-dropout", type=float)
@click.option("--classifier-dropout", type=float)
@click.option("--norm", type=click.Choice(["none", "layer"]))
@click.option("--residual/--no-residual", default=None, help="Identity paths around layers (beyond the paper).")
@click.option("--replicate/--no-replicate", default=None, help="Replicate augmentation (SEL only).")
@click.option("--link/--no-link", default=None, help="Link original and replica graphs (needs --replicate).")
@click.option("--subevents", type=click.Path(path_type=Path),
              help="Sub-event database for --replicate (default: <data>/.avel_cache/subevents.h5 if it "
                   "matches the data, else built in memory).")
@click.option("--overwrite", is_flag=True, help="Replace an existing run folder.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(data_dir, out_dir, resume_dir, preset, replicate, link, subevents, overwrite, quiet, **options):
    """Train a model and test its validation-selected checkpoint on O-AVE and C-AVE.

    A new run needs --data and --out; an interrupted one continues with --resume RUN_DIR."""
    from avel_dgl.train import resume_run, set_threads, train_run

    set_threads()
    if resume_dir is not None:
        if out_dir is not None:
            raise AvelError("--resume: continues a run in its own folder, do not also pass --out")
        if overwrite:
            raise AvelError("--overwrite: cannot be combined with --resume (it would delete the run)")
        if subevents is not None:
            raise AvelError("--subevents: a resumed run keeps the sub-event database it started with")
        ctx = click.get_current_context()
        given = {n for n in ctx.params if ctx.get_parameter_source(n) not in (ParameterSource.DEFAULT, None)}
        epochs = options.pop("epochs")
        expect = {OVERRIDES[k]: v for k, v in options.items() if k in given}
        for name, value, key in (("preset", preset, "preset"), ("replicate", replicate, "train.replicate"),
                                 ("link", link, "train.link")):
            if name in given:
                expect[key] = value
        results = resume_run(resume_dir, data_dir, epochs, expect, progress=not quiet)
        out_dir = resume_dir
    else:
        if out_dir is None:
            raise AvelError("train: expected --out RUN_DIR for a new run, or --resume RUN_DIR to continue one")
        if data_dir is None:
            raise AvelError("--data: a new run needs the AVE-format data folder")
        config = resolve_config(preset, replicate, link, **options)
        if subevents is not None and not config.train.replicate:
            raise AvelError("--subevents: only used with --replicate, found replicate off")
        results = train_run(config, data_dir, out_dir, overwrite=overwrite, progress=not quiet, subevents=subevents)
    click.echo(f"best epoch {results['best_epoch']} (val acc {results['val_acc']:.4f}); "
               f"test acc o-ave {results['test_acc_o-ave']:.4f}, c-ave {results['test_acc_c-ave']:.4f}; "
               f"seed {results['seed']}; run in {out_dir}")


@click.command()
@click.option("--split", "label_set", type=click.Choice(["o-ave", "c-ave"]), default="o-ave", show_default=True,
              help="Test labels: o-ave (labels.h5) or c-ave (right_labels.h5).")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True)
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True)
@click.option("--out", "out_prefix", type=click.Path(path_type=Path),
              help="Write OUT.json and OUT.csv (default: eval_<split> beside the checkpoint).")
def evaluate(label_set, checkpoint, data_dir, out_prefix):
    """Global segment accuracy over the test split, and a per-class table."""
    from avel_dgl.checkpoint import write_text_atomic
    from avel_dgl.train import evaluate_checkpoint, set_threads

    set_threads()
    out_prefix = out_prefix or checkpoint.parent / f"eval_{label_set}"
    result = evaluate_checkpoint(checkpoint, data_dir, label_set, out_prefix.with_suffix(".csv"))
    table = result["per_class"]
    summary = {"checkpoint": str(checkpoint), "label_set": label_set, "videos": result["videos"],
               "segments": int(table["segments"].sum()), "accuracy": result["acc"]}
    write_text_atomic(out_prefix.with_suffix(".json"), json.dumps(summary, indent=2))
    click.echo(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    click.echo(f"test accuracy ({label_set}): {result['acc']:.4f} over {summary['segments']} segments "
               f"of {result['videos']} videos")
    click.echo(f"wrote {out_prefix.with_suffix('.json')} and {out_prefix.with_suffix('.csv')}")


COMMANDS = [train, evaluate]
