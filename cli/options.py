"""Options several commands share, so that each means the same everywhere: --overwrite (one rule:
an existing output is replaced only when asked), --checkpoint; the process options --device,
--kernel, --quiet and --cache-dir, which a command hands to runtime.Runtime.for_process (the one
place they become process state); and the config options, derived from the fields avel_dgl.config
declares with `option`, with the wording of config errors and warnings in their flags. `stacked`
is the one way to give a command a list of options.

Nothing here imports torch or DGL: `avel-dgl --help` and every command's --help import neither
(tests/test_cli_startup.py)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from avel_dgl.config import PRESETS, SECTIONS, field_names, flatten, option_fields
from avel_dgl.errors import ConfigError, ConfigWarning
from avel_dgl.runtime import DEVICES, KERNELS


def stacked(*options):
    """One decorator applying `options` (click decorators) in the order listed, as if written one
    above the other: the order of their --help lines."""
    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


def _checkpoint(ctx, param, value):
    from avel_dgl.checkpoint import resolve_checkpoint

    return None if value is None else resolve_checkpoint(value)


def overwrite_option(what: str):
    return click.option("--overwrite", is_flag=True, help=f"Replace {what} when present (refused otherwise).")


# --- Process options: the arguments of runtime.Runtime.for_process ---------------------------------

device_option = click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                             help="auto: this process's GPU if torch sees one, else the CPU.")
kernel_option = click.option(
    "--kernel", type=click.Choice(KERNELS), default="auto", show_default=True,
    help="Graph kernel (eq 12, RGAT): DGL message passing, or torch sparse/scatter operations over the same graph "
         "(auto: DGL where the installed DGL supports the device).")
quiet_option = click.option("--quiet", is_flag=True, help="No progress bars.")
cache_dir_option = click.option(
    "--cache-dir", type=click.Path(path_type=Path),
    help="Folder for the pooled visual cache and sub-event database, also of the processes this command "
         "starts (default: $AVEL_CACHE_DIR, else DATA/.avel_cache, or ~/.cache/avel-dgl when the data folder "
         "is read-only).")


def checkpoint_option(required: bool = True):
    return click.option("--checkpoint", type=click.Path(path_type=Path), required=required, callback=_checkpoint,
                        help="A trained model: a checkpoint file (best.pt), or a run folder (its best.pt).")


# --- Config options: one per field declared with config.option ------------------------------------

def flag(key: str) -> str:
    """The flag of dotted config field `key`: --batch-size for train.batch_size."""
    return "--" + key.rpartition(".")[2].replace("_", "-")


def _preset_values(key: str, presets: dict[str, dict]) -> str:
    """Each preset's value of `key` for the help line: '[default: sel]', '[default: 768 (paper), 128 (small)]'
    (presets: name -> flattened config)."""
    shown = {name: (("on" if flat[key] else "off") if isinstance(flat[key], bool) else str(flat[key]))
             for name, flat in presets.items() if key in flat}
    if not shown:  # a field no preset has (a config made in a test)
        return ""
    if len(set(shown.values())) == 1:
        return f"  [default: {next(iter(shown.values()))}]"
    return f"  [default: {', '.join(f'{v} ({name})' for name, v in shown.items())}]"


def config_options(exclude: tuple[str, ...] = (), sections: dict[str, type] | None = None):
    """A decorator giving a command one option per config field declared with config.option, but
    the dotted fields in `exclude`: named by `flag`, a --x/--no-x pair for a bool, click.Choice for
    choices, the field's help with each preset's value. Every default is None: an option left unset
    keeps the preset's value (config.resolve_config applies what is set)."""
    presets = {name: flatten(make()) for name, make in PRESETS.items()}
    fields = option_fields(sections)
    options = []
    for key in field_names(sections).values():
        if key in exclude:
            continue
        f, kind = fields[key]
        decls = [flag(key)]
        if kind is bool:
            decls, kind = [f"{flag(key)}/--no-{flag(key)[2:]}"], None  # a pair of flags, click's bool
        elif f.metadata["choices"]:
            kind = click.Choice(f.metadata["choices"])
        options.append(click.option(*decls, type=kind, default=None,
                                    help=f.metadata["help"] + _preset_values(key, presets)))
    return stacked(*options)


FLAGS = {key: flag(key) for key in option_fields()} | {"preset": "--preset"}  # Config.preset's option
_FIELD = re.compile(rf"\b(?:{'|'.join(SECTIONS)})\.\w+")  # a dotted field name inside a message


def in_flags(problem: ConfigError | ConfigWarning) -> str:
    """The message of a config error or warning with each field worded as the flag that sets it
    (a field no option sets keeps its dotted name)."""
    def name(key: str) -> str:
        return FLAGS.get(key, key)
    return f"{name(problem.field)}: {_FIELD.sub(lambda m: name(m.group(0)), problem.problem)}"
