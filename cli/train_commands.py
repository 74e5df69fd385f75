"""`avel-dgl train` and `avel-dgl evaluate`."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path

import click
from click.core import ParameterSource

from avel_dgl.errors import AvelError, ConfigWarning
from cli.options import (cache_dir_option, checkpoint_option, config_options, device_option, kernel_option,
                         overwrite_option, quiet_option)


@click.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path),
              help="AVE-format data folder (with --resume: defaults to the run's own).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Run folder to create.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path),
              help="Continue the run in this folder from its last.pt (same config; --epochs may extend it).")
@click.option("--preset", default="small", show_default=True, help="Named config: small (CPU), large (the paper's size, regularised) or paper (section 4).")
@config_options()
@click.option("--subevents", type=click.Path(path_type=Path),
              help="Sub-event database for --replicate (default: <data>/.avel_cache/subevents.h5 if it "
                   "matches the data, else built in memory).")
@overwrite_option("an existing run folder")
@quiet_option
@cache_dir_option
@device_option
@kernel_option
@click.option("--nproc", type=click.IntRange(min=1),
              help="Data-parallel processes on this machine, launched through torchrun (docs/DISTRIBUTED.md).")
def train(data_dir, out_dir, resume_dir, preset, replicate, link, subevents, overwrite, quiet, cache_dir, device,
          kernel, nproc, **options):
    """Train a model and test its validation-selected checkpoint on O-AVE and C-AVE.

    A new run needs --data and --out; an interrupted one continues with --resume RUN_DIR.
    Under torchrun each process is one rank of a data-parallel run; --batch-size stays the global batch."""
    from avel_dgl import distributed
    from avel_dgl.runtime import Runtime, launch_rank
    from avel_dgl.train_request import train_or_resume

    ctx = click.get_current_context()
    if nproc is not None and nproc > 1:
        sys.exit(distributed.launch(nproc, command_line(ctx, exclude={"nproc"})))
    main_rank = launch_rank() == 0
    show_log(main_rank and not quiet)  # one copy of the run's log lines (device, kernel, notes)
    if not main_rank:  # every rank resolves the same config: rank 0 alone warns about it
        warnings.simplefilter("ignore", ConfigWarning)
    with distributed.errors_printed_once():
        # this process's (this rank's, under torchrun), once
        runtime = Runtime.for_process(device, kernel, quiet=quiet, cache_dir=cache_dir)
        given = {n for n in ctx.params if ctx.get_parameter_source(n) not in (ParameterSource.DEFAULT, None)}
        with distributed.process_group(runtime.device):
            results = train_or_resume(runtime, data_dir=data_dir, out_dir=out_dir, resume_dir=resume_dir,
                                      overwrite=overwrite, subevents=subevents, preset=preset, replicate=replicate,
                                      link=link, options=options, given=given, progress=not quiet)
    if main_rank:
        click.echo(f"best epoch {results['best_epoch']} (val acc {results['val_acc']:.4f}); "
                   f"test acc o-ave {results['test_acc_o-ave']:.4f}, c-ave {accuracy_text(results['test_acc_c-ave'])}; "
                   f"seed {results['seed']}; run in {resume_dir or out_dir}")


def accuracy_text(acc: float | None) -> str:
    """A test accuracy of results.json; None: its label set was skipped (no right_labels.h5)."""
    return "skipped (no right_labels.h5)" if acc is None else f"{acc:.4f}"


class _EchoHandler(logging.Handler):
    """Log records as `avel-dgl: <message>` lines on stderr, with the progress bars (stdout holds
    the command's result only); --quiet leaves both out. Lines are held until the run starts (a
    record marked `run_starts`, logged once every check has passed), so that a run refused
    before prints its one error line alone."""

    def __init__(self):
        super().__init__()
        self.held: list[str] | None = []  # None once the run has started

    def emit(self, record: logging.LogRecord) -> None:
        line = f"avel-dgl: {record.getMessage()}"
        if self.held is not None and not getattr(record, "run_starts", False):
            self.held.append(line)
            return
        for held in self.held or []:
            click.echo(held, err=True)
        self.held = None
        click.echo(line, err=True)


def show_log(shown: bool = True) -> None:
    """Echo the run's log lines (`shown`) or not: set anew by every command of the process."""
    logger = logging.getLogger("avel_dgl")
    for handler in [h for h in logger.handlers if isinstance(h, _EchoHandler)]:
        logger.removeHandler(handler)
    if shown:
        logger.addHandler(_EchoHandler())
        logger.setLevel(logging.INFO)


def command_line(ctx: click.Context, exclude: set[str]) -> list[str]:
    """The command's name and the options the user gave (not defaults: a resumed run compares
    given options with its config), without `exclude`: what each launched process runs."""
    args = [ctx.info_name]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if (param.name in exclude or not param.expose_value
                or ctx.get_parameter_source(param.name) is ParameterSource.DEFAULT):
            continue
        if param.is_flag and param.secondary_opts:  # --x/--no-x
            args.append(param.opts[0] if value else param.secondary_opts[0])
        elif param.is_flag:
            args += [param.opts[0]] if value else []
        else:
            args += [param.opts[0], str(value)]
    return args


def _label_set(ctx, param, value: str) -> str:
    """evaluate --split names a test label set; a data split here is a common slip, so say why."""
    from avel_dgl.data.ave import LABEL_SETS, SPLITS

    if value in LABEL_SETS:
        return value
    why = (" (evaluate always scores the test split; --split chooses its labels. To predict on another "
           "split use `avel-dgl predict --subset`)" if value in SPLITS + ("all",) else "")
    raise AvelError(f"--split: expected o-ave (labels.h5) or c-ave (right_labels.h5), found '{value}'{why}")


@click.command()
@click.option("--split", "label_set", default="o-ave", show_default=True, callback=_label_set,
              help="Which labels of the test split to score: o-ave (labels.h5) or c-ave (right_labels.h5).")
@checkpoint_option()
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True,
              help="AVE-format data folder whose test split is scored.")
@click.option("--out", "out_prefix", type=click.Path(path_type=Path),
              help="A stem: writes STEM.json and STEM.csv (default: eval_<split> beside the checkpoint).")
@device_option
@overwrite_option("existing STEM.json and STEM.csv")
@quiet_option
@cache_dir_option
def evaluate(label_set, checkpoint, data_dir, out_prefix, device, overwrite, quiet, cache_dir):
    """Global segment accuracy over the test split, and a per-class table."""
    from avel_dgl.outputs import check_output, mark, write_texts
    from avel_dgl.engine import evaluate_checkpoint
    from avel_dgl.run_folder import RunFolder
    from avel_dgl.runtime import Runtime

    from avel_dgl.data.dataset import skipped_label_sets

    skipped = skipped_label_sets(data_dir) if data_dir.is_dir() else {}
    if label_set in skipped:  # as train skips it
        raise AvelError(f"--split: {label_set} is not available ({skipped[label_set]}); score o-ave instead")
    runtime = Runtime.for_process(device, quiet=quiet, cache_dir=cache_dir)
    out_prefix = out_prefix or RunFolder(checkpoint.parent).eval_prefix(label_set)
    kind = "a stem for STEM.json and STEM.csv"
    if out_prefix.is_dir():
        raise AvelError(f"--out: {out_prefix} is a folder, expected {kind} (e.g. {out_prefix / 'eval'})")
    targets = [check_output(out_prefix.with_suffix(s), overwrite, kind=kind) for s in (".json", ".csv")]
    result = evaluate_checkpoint(checkpoint, data_dir, label_set, runtime)
    table = result["per_class"]
    summary = {"written_by": mark("evaluate"), "checkpoint": str(checkpoint), "label_set": label_set, "videos": result["videos"],
               "segments": int(table["segments"].sum()), "accuracy": result["acc"]}
    write_texts({targets[0]: json.dumps(summary, indent=2), targets[1]: table.to_csv(index=False)})
    click.echo(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    click.echo(f"test accuracy ({label_set}): {result['acc']:.4f} over {summary['segments']} segments "
               f"of {result['videos']} videos")
    click.echo(f"wrote {out_prefix.with_suffix('.json')} and {out_prefix.with_suffix('.csv')}")


COMMANDS = [train, evaluate]
