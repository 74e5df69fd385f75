"""Options several commands share, so that each means the same everywhere: --overwrite (one rule:
an existing output is replaced only when asked), --quiet, --cache-dir, --checkpoint and --device."""

from __future__ import annotations

from pathlib import Path

import click


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
