"""`avel-dgl extract`, `avel-dgl localize` and `avel-dgl compare-features`: video files in, AVE-format
features or events out, and extracted features checked against the AVE release's."""

from __future__ import annotations

from pathlib import Path

import click

from avel_dgl.errors import AvelError
from avel_dgl.format import VISUAL_WEIGHTS
from cli.options import checkpoint_option, device_option, overwrite_option, quiet_option, stacked


F_HELP = ("Frames per 1-s segment through VGG19, averaged, 1 to 60 (the AVE recipe: 16; fewer is faster on "
          "CPUs but leaves the recipe).")


# Options shared by extract and localize: how features are computed.
feature_options = stacked(
    click.option("--frames-per-segment", type=int, default=16, show_default=True, help=F_HELP),
    click.option("--frame-rule", type=click.Choice(["release-index", "presentation-time"]),
                 default="release-index", show_default=True,
                 help="Which frames of each segment: release-index = the AVE release's frame numbers "
                      "(floor(N / T) frames a segment, N frames, T segments; its features), "
                      "presentation-time = the frames on screen at t + i / F (differs at 29.97 fps)."),
    click.option("--visual-weights", type=click.Choice(VISUAL_WEIGHTS), default="keras", show_default=True,
                 help="VGG19 weights: keras = the Oxford VGG ImageNet release as Keras ships it (the AVE "
                      "features); torchvision = torchvision's own VGG19 (a different feature space)."),
    click.option("--weights-dir", type=click.Path(path_type=Path),
                 help="Folder holding the weight files (offline machines); default: torch's hub cache, "
                      "downloaded once."),
    device_option,
    click.option("--batch-size", type=int, default=16, show_default=True,
                 help="Frames (and audio examples) per network call; bounds memory."),
    click.option("--strict", is_flag=True, help="Stop at the first unreadable video (default: skip it)."),
    quiet_option,
)


def _former_cache_dir(ctx, param, value):
    """localize's feature folder was --cache-dir, which elsewhere names the pooled-cache folder."""
    if value is not None:
        raise AvelError(f"--cache-dir: localize's folder of extracted features is now --feature-cache (--cache-dir "
                        f"names the pooled-cache folder of the commands reading a data folder); use --feature-cache "
                        f"{value}")
    return value


@click.command()
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Output folder: audio_feature.h5, visual_feature.h5, videos.csv (rerun to resume).")
@click.option("--pooled", is_flag=True, help="Visual features (N,T,512), averaged over the 7x7 map, as DPNet "
                                             "uses them (49x smaller), instead of (N,T,7,7,512).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Decoding processes feeding the networks (the same features; under torchrun, per rank).")
@click.option("--overwrite", is_flag=True,
              help="Replace features that extract wrote into --out with other settings or weights.")
@feature_options
def extract(inputs, out_dir, pooled, jobs, overwrite, frames_per_segment, frame_rule, visual_weights, weights_dir,
            device, batch_size, strict, quiet):
    """AVE-format features of video files: VGGish audio (N,T,128) and VGG19 pool5 visual
    (N,T,7,7,512) per 1-s segment. INPUT: video files, folders of videos, or .txt files listing
    paths (a listed file that is missing fails like an unreadable video). Rerunning over the same
    inputs skips the videos already done; Ctrl-C keeps them. Under torchrun each rank extracts its
    share of the videos and rank 0 writes the files (docs/VIDEO.md)."""
    from avel_dgl import distributed
    from avel_dgl.runtime import Runtime
    from avel_dgl.video.extract import Settings
    from avel_dgl.video.extract import extract as run

    with distributed.errors_printed_once():
        # no graph kernel: extract runs no DPNet (and says nothing of eq 12)
        runtime = Runtime.for_process(device, kernel=None, quiet=quiet)
        settings = Settings(frames_per_segment, visual_weights, pooled, batch_size, frame_rule)
        with distributed.process_group(runtime.device):
            entries, n, t = run(inputs, out_dir, settings, weights_dir, runtime.device, strict,
                                progress=not quiet and runtime.is_main, jobs=jobs, overwrite=overwrite)
    failed = sum(e.status == "failed" for e in entries)
    if runtime.is_main:
        click.echo(f"{n} videos x {t} segments{f', {failed} failed' if failed else ''}; wrote "
                   f"{out_dir / 'audio_feature.h5'}, {out_dir / 'visual_feature.h5'}, {out_dir / 'videos.csv'}")


@click.command()
@click.argument("inputs", metavar="VIDEO...", nargs=-1, required=True)
@checkpoint_option()
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="FILE.json, or FILE.csv (events; per-segment probabilities go to FILE_segments.csv).")
@click.option("--html", "html_out", type=click.Path(path_type=Path),
              help="FILE.html: a timeline page (thumbnails, event bars, class probabilities).")
@click.option("--feature-cache", "feature_cache", type=click.Path(path_type=Path),
              help="Where extracted features are kept and reused (default: ~/.cache/avel-dgl/features).")
@click.option("--cache-dir", "former_cache_dir", hidden=True, expose_value=False, callback=_former_cache_dir,
              help="Former name of --feature-cache: refused with a message saying so.")
@click.option("--mode", type=click.Choice(["whole", "windows"]), default=None,
              help="Videos longer than 10 s: whole (one graph of T segments) or in 10-s windows, "
                   "stitched (default: whole, the better one on long synthetic videos; docs/BENCHMARKS.md).")
@overwrite_option("the --out and --html files")
@feature_options
def localize(inputs, checkpoint, out, html_out, feature_cache, mode, overwrite, frames_per_segment, frame_rule,
             visual_weights, weights_dir, device, batch_size, strict, quiet):
    """Events (intervals in seconds with class names) in video files: extract features (cached),
    predict every segment, merge runs of one event class. VIDEO: video files, folders, or .txt
    lists. Output as `predict`'s, with each video's path."""
    from avel_dgl.engine import load_model
    from avel_dgl.localize import DEFAULT_MODE
    from avel_dgl.localize import localize as run
    from avel_dgl.runtime import Runtime
    from avel_dgl.video.extract import Settings

    runtime = Runtime.for_process(device, quiet=quiet)
    settings = Settings(frames_per_segment, visual_weights, True, batch_size, frame_rule)
    model = lambda: load_model(checkpoint, runtime)[0]  # noqa: E731 (loaded once every place written is checked)
    summary = run(inputs, model, out, html_out, feature_cache, settings, mode or DEFAULT_MODE, weights_dir,
                  runtime.device, strict, checkpoint, progress=not quiet, overwrite=overwrite)
    click.echo(f"{summary['videos']} videos, {summary['events']} events; wrote "
               f"{' and '.join(map(str, summary['files']))}")


@click.command("compare-features")
@click.argument("ours", type=click.Path(path_type=Path))
@click.argument("release", type=click.Path(path_type=Path))
@click.option("--annotations", type=click.Path(path_type=Path),
              help="The release's Annotations.txt (default: RELEASE/Annotations.txt): line i names row i's YouTube id.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (per video, modality and segment).")
def compare_features(ours, release, annotations, as_json):
    """Compare features from `extract` (folder OURS) with the AVE release's (folder RELEASE:
    audio_feature.h5, visual_feature.h5) on the same videos, matched by YouTube id (AVE's file
    names). Prints per video and overall the cosine similarity and largest difference per
    modality and segment, the audio zero fraction, and a verdict. Run it on a few AVE test
    videos before trusting a model trained on the release's features with your own videos."""
    import json

    from avel_dgl.video.compare import compare_features as run
    from avel_dgl.video.compare import format_report

    report = run(ours, release, annotations)
    click.echo(json.dumps(report, indent=1) if as_json else format_report(report))


COMMANDS = [extract, localize, compare_features]
