"""`avel-dgl check-data`: validate an AVE-format folder and print what it holds."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import click

from avel_dgl.format import N_SEGMENTS, NOISY_FILES
from avel_dgl.outputs import size_text
from cli.options import cache_dir_option, quiet_option

if TYPE_CHECKING:  # data.dataset loads torch: imported where the command runs, not for --help
    from avel_dgl.data.dataset import DataReport


def format_report(report: DataReport) -> str:
    """The check-data summary: plain text, one fact per line."""
    lines = [f"AVE data in {report.data_dir}: {report.n_videos} videos x {N_SEGMENTS} segments"]
    lines.append("files:")
    width = max(len(info.file) for info in report.files)
    for info in report.files:
        key = f"key '{info.key}'"
        lines.append(f"  {info.file:<{width}}  {key:<16}  {str(info.shape):<20} "
                     f"{info.dtype:<8} {size_text(info.size_bytes):>9}")
    splits = ", ".join(f"{split} {count}" for split, count in report.splits.items())
    lines.append(f"videos per split: {splits} (rows in no split: {report.unassigned_rows})")
    lines.append(f"mil_labels.h5: {report.video_classes} of 28 event classes present in video labels")
    for stats in report.labels:
        lines.append(f"{stats.file}: {stats.event_classes} of 28 event classes present; "
                     f"background share of segments {100 * stats.background_share:.1f}%")
        if stats.multi_label_rows:
            lines.append(f"  rows with more than one class (lowest class index used): "
                         f"{', '.join(map(str, stats.multi_label_rows))}")
    if report.mil_multi_label_rows:
        lines.append(f"mil_labels.h5 rows with more than one class (lowest class index used): "
                     f"{', '.join(map(str, report.mil_multi_label_rows))}")
    counts = report.labels[0].event_lengths
    lines.append(f"event length (event segments per video, {report.labels[0].file}):")
    scale = max(1, int(counts.max())) / 40
    for length, count in enumerate(counts):
        lines.append(f"  {length:>2} | {'#' * int(round(count / scale)):<40} {int(count)}")
    lines.append("c-ave labels (right_labels.h5): " + ("present, valid" if report.right_labels
                                                     else "absent (c-ave evaluation unavailable)"))
    lines.append("WSEL extras (" + ", ".join(NOISY_FILES) + "): " + (
        f"present, valid ({report.noisy_videos} videos)" if report.noisy_videos is not None
        else "absent (WSEL training unavailable)"))
    lines.append("Annotations.txt: " + (f"present, valid ({report.annotations} lines)"
                                        if report.annotations is not None else "absent (optional)"))
    for name, how in report.visual_scan.items():
        lines.append(f"{name} values: {how}")
    lines.append("ok")
    return "\n".join(lines)


@click.command("check-data")
@click.argument("data_dir", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--require-noisy", is_flag=True, help="Fail when the WSEL extras are absent.")
@click.option("--require-c-ave", is_flag=True, help="Fail when right_labels.h5 is absent.")
@click.option("--skip-visual-scan", is_flag=True,
              help="Check the visual files' headers only: no NaN/Inf scan, no cache build.")
@cache_dir_option
@quiet_option
def check_data(data_dir: Path, require_noisy: bool, require_c_ave: bool, skip_visual_scan: bool, cache_dir: Path | None,
               quiet: bool) -> None:
    """Validate the AVE-format folder DIR and print a summary.

    Every file is checked (keys, shapes, dtypes, row counts, splits, one-hot labels, finite
    audio). The visual maps are scanned for NaN/Inf by streaming them into the pooled cache
    (built once, reused while the source is unchanged). Bad data: one error line, exit 2.
    """
    from avel_dgl.data.dataset import validate_dir
    from avel_dgl.interrupt import stoppable
    from avel_dgl.runtime import Runtime

    Runtime.for_process(device=None, quiet=quiet, cache_dir=cache_dir)  # runs no network: no device
    # Collect warnings so that bad data prints exactly one line; they are shown on success.
    with stoppable("check-data", "the pooled visual cache was not written (the visual scan is redone next "
                                 "time); run the same command again"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = validate_dir(data_dir, require_noisy=require_noisy,
                              require_right_labels=require_c_ave,
                              scan_visual=not skip_visual_scan)
    click.echo(format_report(report))
    for warning in caught:
        click.echo(f"avel-dgl: warning: {warning.message}", err=True)


COMMANDS = [check_data]
