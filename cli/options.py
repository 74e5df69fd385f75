"""Options several commands share, so that each means the same everywhere: --overwrite (one rule:
an existing output is replaced only when asked), --quiet, --cache-dir, --checkpoint and --device;
and the config options, derived from the fields avel_dgl.config declares with `option`, with the
wording of config errors and warnings in their flags."""

from __future__ import annotations

import re
from pathlib import Path

import click

from avel_dgl.config import PRESETS, SECTIONS, flatten, option_fields
from avel_dgl.errors import ConfigError, ConfigWarning


def _quiet(ctx, param, value):
    from avel_dgl.progress import set_quiet

    set_quiet(bool(value))
    return value


def _cache_dir(ctx, param, value):
    # Through the environment, so that processes this one launches (train --nproc) use it too.
    import os

    from avel_dgl.data.cache import CACHE_ENV

    if value is not None:
        os.environ[CACHE_ENV] = str(value)
    return value


def _checkpoint(ctx, param, value):
    from avel_dgl.checkpoint import resolve_checkpoint

    return None if value is None else resolve_checkpoint(value)


def overwrite_option(what: str):
    return click.option("--overwrite", is_flag=True, help=f"Replace {what} when present (refused otherwise).")


# The names avel_dgl.runtime.resolve_device takes (not imported here: it would load torch for --help).
device_option = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                             help="auto: this process's GPU if torch sees one, else the CPU.")
quiet_option = click.option("--quiet", is_flag=True, callback=_quiet, help="No progress bars.")
cache_dir_option = click.option(
    "--cache-dir", type=click.Path(path_type=Path), callback=_cache_dir, expose_value=False,
    help="Folder for the pooled visual cache and sub-event database (default: $AVEL_CACHE_DIR, else "
         "DATA/.avel_cache, or ~/.cache/avel-dgl when the data folder is read-only).")


def checkpoint_option(required: bool = True):
    return click.option("--checkpoint", type=click.Path(path_type=Path), required=required, callback=_checkpoint,
                        help="A trained model: a checkpoint file (best.pt), or a run folder (its best.pt).")


# --- Config options: one per field declared with config.option ------------------------------------

def flag(key: str) -> str:
    """The flag of dotted config field `key`: --batch-size for train.batch_size."""
    return "--" + key.rpartition(".")[2].replace("_", "-")


def option_names(sections: dict[str, type] | None = None) -> dict[str, str]:
    """Click parameter name -> dotted field, for every config option (sections: see config.option_fields)."""
    names = {}
    for key in option_fields(sections):
        name = key.rpartition(".")[2]
        if name in names:  # one flag for two fields: a config with such fields needs a wording of its own
            raise ValueError(f"config fields {names[name]} and {key} would both be {flag(key)}")
        names[name] = key
    return names


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
    keeps the preset's value (the command maps what is set with `option_names`)."""
    presets = {name: flatten(make()) for name, make in PRESETS.items()}
    fields = option_fields(sections)
    options = []
    for key in option_names(sections).values():
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

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


FLAGS = {key: flag(key) for key in option_fields()} | {"preset": "--preset"}  # Config.preset's option
_FIELD = re.compile(rf"\b(?:{'|'.join(SECTIONS)})\.\w+")  # a dotted field name inside a message


def in_flags(problem: ConfigError | ConfigWarning) -> str:
    """The message of a config error or warning with each field worded as the flag that sets it
    (a field no option sets keeps its dotted name)."""
    def name(key: str) -> str:
        return FLAGS.get(key, key)
    return f"{name(problem.field)}: {_FIELD.sub(lambda m: name(m.group(0)), problem.problem)}"
