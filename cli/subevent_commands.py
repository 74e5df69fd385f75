"""`avel-dgl build-subevents`: the sub-event databases of a training split (section 3.4)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("build-subevents")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True, help="AVE-format data folder.")
@click.option("--out", "out_file", type=click.Path(path_type=Path),
              help="Database file to write (default: <data>/.avel_cache/subevents.h5, where training looks).")
def build_subevents(data_dir: Path, out_file: Path | None) -> None:
    """Identify the start/continue/end/background sub-events of every training video and write
    their databases (references, not features) with a fingerprint of the data. Prints, per class
    and kind, the number of entries of each length."""
    from avel_dgl.data.ave import load_split
    from avel_dgl.data.subevents import ReplicaSampler, build_database, default_path, save_database, summary_table

    train = load_split(data_dir, "train")
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


COMMANDS = [build_subevents]
