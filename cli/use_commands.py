"""`avel-dgl predict`, `avel-dgl report` and `avel-dgl fam`: using a trained model."""

from __future__ import annotations

from pathlib import Path

import click

from avel_dgl.errors import AvelError
from cli.options import cache_dir_option, checkpoint_option, device_option, overwrite_option, quiet_option


@click.command()
@checkpoint_option()
@click.option("--data", "data_dir", type=click.Path(path_type=Path), help="AVE-format data folder.")
@click.option("--subset", "selection", default="test", show_default=True,
              help="With --data, which videos: train, val, test, all, or comma-separated h5 row indices "
                   "(each once).")
@click.option("--split", "old_selection", hidden=True, help="Former name of --subset.")
@click.option("--audio", type=click.Path(path_type=Path),
              help="New videos: audio features (N,10,128) under key 'avadataset' (use with --visual).")
@click.option("--visual", type=click.Path(path_type=Path),
              help="New videos: visual features (N,10,7,7,512) or pooled (N,10,512) under key 'avadataset'.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="A file: FILE.json (everything), or FILE.csv (events; per-segment probabilities go to "
                   "FILE_segments.csv beside it).")
@click.option("--batch-size", type=int, default=256, show_default=True, help="Videos read and predicted at a time.")
@device_option
@overwrite_option("the output file(s)")
@quiet_option
@cache_dir_option
@click.pass_context
def predict(ctx, checkpoint, data_dir, selection, old_selection, audio, visual, out, batch_size, device, overwrite,
            quiet, cache_dir):
    """Detected events (intervals in seconds, class, confidence) and per-segment class
    probabilities for every video of a data folder's subset or of new feature files."""
    from avel_dgl.engine import load_model
    from avel_dgl.predict import (output_files, data_folder_source, feature_files_source, parse_selection,
                                  predict_to_file)
    from avel_dgl.runtime import Runtime

    given = ctx.get_parameter_source("selection") != click.core.ParameterSource.DEFAULT
    if old_selection is not None:
        if given:
            raise AvelError("--split: renamed --subset; give only --subset")
        click.echo("avel-dgl: warning: predict --split is now called --subset (--split still works for now)", err=True)
        selection, given = old_selection, True
    new_videos = audio is not None or visual is not None
    if new_videos and data_dir is not None:
        raise AvelError("--data: give either --data or --audio/--visual, found both")
    if new_videos and (audio is None or visual is None):
        raise AvelError(f"--{'visual' if visual is None else 'audio'}: new videos need both --audio and --visual")
    if not new_videos and data_dir is None:
        raise AvelError("--data: expected a data folder, or --audio and --visual feature files")
    if new_videos and given:
        raise AvelError("--subset: only applies to --data (feature files are predicted whole)")
    rows = None if new_videos else parse_selection(selection)
    runtime = Runtime.for_process(device, quiet=quiet, cache_dir=cache_dir)
    output_files(out, overwrite)
    # Checkpoint first: building a data folder's pooled cache can take minutes on the real data.
    model = load_model(checkpoint, runtime)[0]  # predict_probs sends each chunk to the model's device
    source = feature_files_source(audio, visual) if new_videos else data_folder_source(data_dir, rows)
    files, videos, events = predict_to_file(model, source, out, batch_size, checkpoint, overwrite)
    click.echo(f"{videos} videos, {events} events; wrote {' and '.join(map(str, files))}")


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", "data_dir", type=click.Path(path_type=Path),
              help="Data folder for test predictions (default: the one recorded in results.json).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path),
              help="A folder for report.html and its PNGs (default: RUN_DIR/report).")
@click.option("--videos", "per_kind", type=int, default=2, show_default=True,
              help="Timelines of this many best, worst and typical test videos each.")
@device_option
@overwrite_option("an earlier report folder")
@quiet_option
@cache_dir_option
def report(run_dir, data_dir, out_dir, per_kind, device, overwrite, quiet, cache_dir):
    """A self-contained HTML report of a training run: curves, per-class accuracy, confusion
    matrices, and timelines of true vs predicted events."""
    from avel_dgl.report import build_report
    from avel_dgl.runtime import Runtime

    if per_kind < 1:
        raise AvelError(f"--videos: expected a positive integer, found {per_kind}")
    runtime = Runtime.for_process(device, quiet=quiet, cache_dir=cache_dir)
    path, notes = build_report(run_dir, runtime, data_dir, out_dir, per_kind, overwrite)
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
@checkpoint_option()
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True,
              help="AVE-format data folder (the video's full 7x7 maps are read from visual_feature.h5).")
@click.option("--video", "row", type=int, required=True, help="The video's h5 row index.")
@click.option("--segments", help="Comma-separated segments 0-9 (default: up to 4 predicted event segments).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="A file: FILE.png.")
@device_option
@overwrite_option("the output file")
@quiet_option
def fam(checkpoint, data_dir, row, segments, out, device, overwrite, quiet):
    """Feature activation maps (paper section 4.2) of the first RGCT's relational polymorphs."""
    from avel_dgl.fam import fam_figure
    from avel_dgl.runtime import Runtime

    runtime = Runtime.for_process(device, quiet=quiet)
    shown = fam_figure(checkpoint, data_dir, row, _segments(segments), out, runtime, overwrite)
    click.echo(f"wrote {out} (segments {', '.join(map(str, shown))})")


COMMANDS = [predict, report, fam]
