"""`avel-dgl build-subevents`: the sub-event databases of a training split (section 3.4)."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from cli.options import cache_dir_option, overwrite_option


@click.command("build-subevents")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True, help="AVE-format data folder.")
@click.option("--out", "out_file", type=click.Path(path_type=Path),
              help="A file: the database to write (default: subevents.h5 in the cache folder, where training "
                   "looks; see --cache-dir).")
@overwrite_option("an existing --out file (the default location is a cache and is always refreshed)")
@cache_dir_option
def build_subevents(data_dir: Path, out_file: Path | None, overwrite: bool, cache_dir: Path | None) -> None:
    """Identify the start/continue/end/background sub-events of every training video and write
    their databases (references, not features) with a fingerprint of the data. Prints, per class
    and kind, the number of entries of each length."""
    from avel_dgl.outputs import check_output
    from avel_dgl.data.ave import MultiLabelWarning, onehot_to_index, read_checked
    from avel_dgl.data.dataset import load_split
    from avel_dgl.format import LABELS_FILE, MIL_LABELS_FILE
    from avel_dgl.data.subevents import ReplicaSampler, build_database, default_path, save_database, summary_table
    from avel_dgl.runtime import Runtime

    Runtime.for_process(device=None, cache_dir=cache_dir)  # runs no network: no device
    if out_file is not None:
        check_output(out_file, overwrite, kind="a file for the database")
    # Multi-label rows are warned about as check-data does: over the whole label files (load_split
    # would name only the training rows among them), shown after the output.
    with warnings.catch_warnings(record=True) as loading:
        warnings.simplefilter("always")
        train = load_split(data_dir, "train")
    with warnings.catch_warnings(record=True) as labels:
        warnings.simplefilter("always")
        for name in (LABELS_FILE, MIL_LABELS_FILE):
            onehot_to_index(read_checked(data_dir / name), str(data_dir / name))
    caught = [w for w in loading if not issubclass(w.category, MultiLabelWarning)] + labels
    db = build_database(train)
    out_file = out_file or default_path(data_dir)
    save_database(db, out_file)
    table = summary_table(db)
    click.echo(table.to_string(index=False))
    sampler = ReplicaSampler(train, db, seed=0)  # only for its plan: which sub-events need a fallback
    sub_events, fallbacks, copied = (int(a.sum()) for a in
                                     (sampler.video_sub_events, sampler.video_fallbacks, sampler.video_copied))
    click.echo(f"{len(train)} training videos, {sub_events} sub-events, {len(db)} database entries; "
               f"{fallbacks} sub-events have no sample from another video and are re-split "
               f"({copied} pieces copied from the original)")
    click.echo(f"wrote {out_file} (fingerprint {db.fingerprint[:12]})")
    for warning in caught:
        click.echo(f"avel-dgl: warning: {warning.message}", err=True)


COMMANDS = [build_subevents]
