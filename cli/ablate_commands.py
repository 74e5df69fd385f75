"""`avel-dgl ablate`: the perspective-combination study of Table 3 on the user's data."""

from __future__ import annotations

from pathlib import Path

import click

from avel_dgl.config import VARIANTS
from cli.options import cache_dir_option, config_options, device_option, kernel_option, quiet_option

# The fields avel_dgl.grid.cell_config sets for each run of the grid (variant, column, seed): no
# option for them. (Not imported from there: that would load the training code for every command.)
CELL_FIELDS = ("model.variant", "train.task", "train.replicate", "train.link", "train.seed")


@click.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True, help="AVE-format data folder.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Grid folder: one run folder per cell and seed, table.csv and table.md. Rerun to resume.")
@click.option("--variants", default="all", show_default=True,
              help=f"'all' or a comma list of: {', '.join(VARIANTS)}.")
@click.option("--tasks", default="sel,wsel", show_default=True,
              help="sel (columns SEL Base, +Rep., +Link), wsel (column WSEL), or both.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Runs per cell, with seeds 0..K-1.")
@click.option("--preset", default="small", show_default=True, help="Named config: small (CPU), large (the paper's size, regularised) or paper (section 4).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs trained at a time, each in its own process with one thread, pinned to its own core "
                   "where there are enough; a run's results are those it gets alone at one thread. "
                   "Progress bars only with 1.")
@config_options(exclude=CELL_FIELDS)
@device_option
@kernel_option
@click.option("--dry-run", is_flag=True, help="Show the variants' layers and sizes and the runs left; train nothing.")
@quiet_option
@cache_dir_option
def ablate(data_dir, out_dir, variants, tasks, seeds, preset, jobs, device, kernel, dry_run, quiet, cache_dir,
           **options):
    """Train every network variant on every column of Table 3 (WSEL, SEL Base, +Rep., +Link) over
    several seeds, and write the table (mean ± std, o-ave and c-ave) as CSV and Markdown."""
    from avel_dgl import ablate as study, grid
    from avel_dgl.config import resolve_config, validate
    from avel_dgl.runtime import Runtime

    base = resolve_config(preset, False, False, **options)
    validate(base)
    names, columns = grid.parse_variants(variants), grid.parse_tasks(tasks)
    # the grid's, for every run and worker (a worker pins itself to its own core: runtime.pin_worker);
    # a dry run trains nothing (no device) but reads the data through the cache folder
    runtime = Runtime.for_process(None if dry_run else device, kernel, quiet=quiet, cache_dir=cache_dir)
    if dry_run:
        study.dry_run(base, data_dir, out_dir, names, columns, seeds, echo=click.echo)
        return
    study.run_grid(base, data_dir, out_dir, names, columns, seeds, runtime, echo=click.echo, progress=not quiet,
                   jobs=jobs)
    click.echo(f"wrote {out_dir / 'table.md'} and {out_dir / 'table.csv'}")


COMMANDS = [ablate]
