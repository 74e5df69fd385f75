"""The `make-synthetic` command: write a synthetic AVE-format data folder."""

from __future__ import annotations

import json

import click

from cli.options import overwrite_option, quiet_option

COMMANDS: list = []


def _integer(ctx, param, value):
    """Whole numbers only; a bad value is a one-line AvelError like every other bad option."""
    from avel_dgl.errors import AvelError

    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise AvelError(f"--{param.name}: expected an integer, found {value!r}") from None


@click.command("make-synthetic")
@click.option("--out", "out", required=True, metavar="DIR",
              help="A folder to create (an existing non-empty one is refused; see --overwrite).")
@click.option("--videos", default=None, callback=_integer, metavar="N",
              help="Number of videos [default: 600; with --annotations, all its rows]. 4143 = the real AVE size.")
@click.option("--seed", default="0", callback=_integer, metavar="S", show_default=True, help="Same seed, same arrays.")
@click.option("--annotations", default=None, metavar="FILE",
              help="An AVE Annotations.txt whose classes and spans to use; order files beside it give the splits.")
@click.option("--visual-dtype", default="float64", metavar="float64|float32", show_default=True,
              help="float64 (as the real release) or float32 (half the size).")
@overwrite_option("a folder written earlier by make-synthetic (never one holding other files)")
@quiet_option
def make_synthetic_command(out, videos, seed, annotations, visual_dtype, overwrite, quiet):
    """Write a complete synthetic AVE-format data folder (features from a documented generative
    model, see docs/SYNTHETIC.md)."""
    from avel_dgl.data.synthetic import MANIFEST_FILE, make_synthetic
    from avel_dgl.outputs import size_text

    path = make_synthetic(out, videos=videos, seed=seed, annotations=annotations,
                          visual_dtype=visual_dtype, progress=not quiet, overwrite=overwrite)
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    sizes = manifest["split_sizes"]
    total = size_text(sum(p.stat().st_size for p in path.iterdir() if p.is_file()))
    click.echo(f"wrote {path}: {manifest['videos']} videos (train {sizes['train']}, val {sizes['val']}, "
               f"test {sizes['test']}), {manifest['noisy_videos']} noisy, {total}")


COMMANDS.append(make_synthetic_command)
