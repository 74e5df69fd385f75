"""`avel-dgl predict`, `avel-dgl report` and `avel-dgl fam`: using a trained model."""

from __future__ import annotations

from pathlib import Path

import click

from avel_dgl.errors import AvelError


@click.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, help="A trained model (best.pt).")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), help="AVE-format data folder.")
@click.option("--split", "selection", default="test", show_default=True,
              help="With --data: train, val, test, all, or comma-separated h5 row indices.")
@click.option("--audio", type=click.Path(path_type=Path),
              help="New videos: audio features (N,10,128) under key 'avadataset' (use with --visual).")
@click.option("--visual", type=click.Path(path_type=Path),
              help="New videos: visual features (N,10,7,7,512) or pooled (N,10,512) under key 'avadataset'.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="FILE.json, or FILE.csv (events; per-segment probabilities go to FILE_segments.csv).")
@click.option("--batch-size", type=int, default=256, show_default=True, help="Videos read and predicted at a time.")
@click.pass_context
def predict(ctx, checkpoint, data_dir, selection, audio, visual, out, batch_size):
    """Detected events (intervals in seconds, class, confidence) and per-segment class
    probabilities for every video of a data folder's split or of new feature files."""
    from avel_dgl.checkpoint import load_model
    from avel_dgl.predict import (check_output, data_folder_source, feature_files_source, parse_selection,
                                  predict_to_file)
    from avel_dgl.train import set_threads

    new_videos = audio is not None or visual is not None
    if new_videos and data_dir is not None:
        raise AvelError("--data: give either --data or --audio/--visual, found both")
    if new_videos and (audio is None or visual is None):
        raise AvelError(f"--{'visual' if visual is None else 'audio'}: new videos need both --audio and --visual")
    if not new_videos and data_dir is None:
        raise AvelError("--data: expected a data folder, or --audio and --visual feature files")
    if new_videos and ctx.get_parameter_source("selection") != click.core.ParameterSource.DEFAULT:
        raise AvelError("--split: only applies to --data (feature files are predicted whole)")
    set_threads()
    check_output(out)
    # Checkpoint first: building a data folder's pooled cache can take minutes on the real data.
    model, _, _ = load_model(checkpoint)
    source = (feature_files_source(audio, visual) if new_videos
              else data_folder_source(data_dir, parse_selection(selection)))
    files, videos, events = predict_to_file(model, source, out, batch_size, checkpoint)
    click.echo(f"{videos} videos, {events} events; wrote {' and '.join(map(str, files))}")


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", "data_dir", type=click.Path(path_type=Path),
              help="Data folder for test predictions (default: the one recorded in results.json).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Report folder (default: RUN_DIR/report).")
@click.option("--videos", "per_kind", type=int, default=2, show_default=True,
              help="Timelines of this many best, worst and typical test videos each.")
def report(run_dir, data_dir, out_dir, per_kind):
    """A self-contained HTML report of a training run: curves, per-class accuracy, confusion
    matrices, and timelines of true vs predicted events."""
    from avel_dgl.report import build_report
    from avel_dgl.train import set_threads

    if per_kind < 1:
        raise AvelError(f"--videos: expected a positive integer, found {per_kind}")
    set_threads()
    path, notes = build_report(run_dir, data_dir, out_dir, per_kind)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote {path} (PNGs beside it)")


def _segments(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(x) for x in value.split(",")]
    except ValueError:
        raise AvelError(f"--segments: expected comma-separated segment indices (e.g. 2,5), found '{value}'") from None


@click.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, help="A trained DPNet (best.pt).")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True,
              help="AVE-format data folder (the full visual_feature.h5 is read).")
@click.option("--video", "row", type=int, required=True, help="The video's h5 row index.")
@click.option("--segments", help="Comma-separated segments 0-9 (default: up to 4 predicted event segments).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="FILE.png")
def fam(checkpoint, data_dir, row, segments, out):
    """Feature activation maps (paper section 4.2) of the first RGCT's relational polymorphs."""
    from avel_dgl.fam import fam_figure
    from avel_dgl.train import set_threads

    set_threads()
    shown = fam_figure(checkpoint, data_dir, row, _segments(segments), out)
    click.echo(f"wrote {out} (segments {', '.join(map(str, shown))})")


COMMANDS = [predict, report, fam]
