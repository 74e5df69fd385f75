"""Run reports: one self-contained HTML page (PNGs embedded as data URIs, and also written beside
it) showing what a training run learned.

Sections: the run's config and results; loss, accuracy and learning-rate curves per epoch; test
accuracy per class on O-AVE and C-AVE; confusion matrices; and timelines of true vs predicted
events for a sample of test videos (the best, the worst and typical ones).

Everything comes from the run folder written by `train.train_run` (config.json, metrics.csv,
results.json, per_class_<set>.csv, best.pt). The confusion matrices and timelines need the test
split, so they predict with best.pt on the data folder recorded in results.json (or --data). A
section that cannot be made says why on the page instead of disappearing. metrics.csv is read by
column name: the curves plot whichever known columns it has.
"""

from __future__ import annotations

import base64
import html
import io
import json
from colorsys import hls_to_rgb
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from matplotlib import colormaps
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure  # the object API: no pyplot state, no display backend
from matplotlib.ticker import MaxNLocator

from avel_dgl.data.ave import BACKGROUND, CLASS_NAMES, LABEL_SETS, N_CLASSES, N_EVENTS, N_SEGMENTS
from avel_dgl.errors import AvelError
from avel_dgl.metrics import confusion_matrix, global_accuracy, per_class_table
from avel_dgl.outputs import OwnedFolder, check_owned_folder, html_mark, writing_folder
from avel_dgl.predict import SEGMENT_SECONDS, segment_runs
from avel_dgl.progress import bar
from avel_dgl.run_folder import RunFolder

if TYPE_CHECKING:  # a type only: the model's modules load when a report predicts (test_predictions)
    from avel_dgl.runtime import Runtime

REPORT_FILE = "report.html"
# Every file a report folder may hold: what --overwrite may delete.
REPORT_FILES = (REPORT_FILE, "curves.png", "per_class.png", *(f"confusion_{s}.png" for s in LABEL_SETS),
                "timelines.png")
LOSS_COLUMNS = ("train_loss", "val_loss")
ACC_COLUMNS = ("train_acc", "val_acc")
# Accuracy agreement between results.json and the report's own predictions (float32 round-off).
ACC_TOLERANCE = 1e-6
TIMELINE_CHARS_PER_SECOND = 11  # label characters that fit in one second of a timeline at 8 pt

BACKGROUND_COLOUR = "#dddddd"


def to_lab(rgb) -> np.ndarray:
    """CIELAB (D65) of sRGB colours (..., 3) in [0, 1]: distances there follow what eyes tell
    apart (RGB distance does not: it spread greens that look alike as far as blues that do not)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192], [0.1805, 0.0722, 0.9505]])
    xyz = xyz / np.array([0.9505, 1.0, 1.089])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def distinct_colours(n: int, avoid: list[str]) -> list[tuple[float, float, float]]:
    """n colours as far apart as a greedy farthest-point choice gets them (CIELAB distance), from
    a grid of hues, lightnesses and saturations, also far from each colour in `avoid`. tab20 +
    tab20b, used before, gave Frying (food) and Toilet flush two near-identical dark red-browns;
    RGB distance then gave Bark, Rodents and Baby cry three greens close to the 'right' strip."""
    grid = np.array([hls_to_rgb(h / 72, light, sat) for h in range(72) for light in (0.25, 0.4, 0.55, 0.7, 0.82)
                     for sat in (0.45, 0.7, 0.95)])
    lab = to_lab(grid)
    nearest = np.min([np.linalg.norm(lab - to_lab(to_rgb(c)), axis=1) for c in avoid], axis=0)
    chosen = []
    for _ in range(n):
        k = int(np.argmax(nearest))
        chosen.append(tuple(float(v) for v in grid[k]))
        nearest = np.minimum(nearest, np.linalg.norm(lab - lab[k], axis=1))
    return chosen


RIGHT, WRONG = "#2e9e44", "#d7191c"  # the timelines' right/wrong segment marks
# 28 event colours far from each other, from the background grey, from black and white text and
# from the right/wrong strips under the lanes.
CLASS_COLOURS = distinct_colours(N_EVENTS, [BACKGROUND_COLOUR, "white", "black", RIGHT, WRONG]) + [BACKGROUND_COLOUR]
assert len(CLASS_COLOURS) == N_CLASSES


def short_name(c: int) -> str:
    """The class name up to its first comma: 'Male speech, man speaking' -> 'Male speech'."""
    return CLASS_NAMES[c].split(",")[0]


@dataclass
class SplitPredictions:
    """best.pt on the test split: probabilities and the labels of one label set."""

    label_set: str
    rows: np.ndarray  # (N,) h5 rows
    probs: np.ndarray  # (N, T, C)
    labels: np.ndarray  # (N, T)

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(-1)


@dataclass
class Section:
    title: str
    images: list[tuple[str, bytes, str]] = field(default_factory=list)  # (file name, png bytes, caption)
    html: str = ""  # extra HTML under the images (tables)
    notes: list[str] = field(default_factory=list)  # why something is missing or suspicious


# ---- reading the run ------------------------------------------------------------------------

def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise AvelError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(value, dict):
        raise AvelError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def read_run(run_dir: Path) -> tuple[dict, pd.DataFrame, dict | None]:
    """config.json and metrics.csv (required), results.json (optional: an unfinished run has none)."""
    if not run_dir.is_dir():
        raise AvelError(f"{run_dir}: run folder not found")
    files = RunFolder(run_dir)
    config_file, metrics_file, results_file = files.config, files.metrics, files.results
    for f in (config_file, metrics_file):
        if not f.is_file():
            raise AvelError(f"{f}: not found (expected a run folder written by `avel-dgl train`)")
    config = _read_json(config_file)
    results = _read_json(results_file) if results_file.is_file() else None
    try:
        metrics = pd.read_csv(metrics_file)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise AvelError(f"{metrics_file}: not a readable CSV ({e})") from None
    if "epoch" not in metrics.columns:
        raise AvelError(f"{metrics_file}: expected a column 'epoch', found columns {list(metrics.columns)}")
    return config, metrics, results


def test_predictions(checkpoint: Path, data_dir: Path, runtime: Runtime) -> dict[str, SplitPredictions]:
    """Probabilities of best.pt on the test split, computed under `runtime`, with the labels of each
    label set the data folder has (C-AVE needs right_labels.h5)."""
    from avel_dgl import engine
    from avel_dgl.engine import load_model
    from avel_dgl.data.dataset import load_split, test_label_sets

    model, config, _ = load_model(checkpoint, runtime)  # predict_logits sends each batch to the model's device
    out, probs = {}, None
    for label_set in test_label_sets(data_dir):
        test = load_split(data_dir, "test", label_set)
        if probs is None:  # the features do not depend on the label set
            probs = torch.softmax(engine.predict_logits(model, test, config.train.batch_size), -1).cpu().numpy()
        out[label_set] = SplitPredictions(label_set, test.rows.numpy(), probs, test.segment_labels.numpy())
    return out


# ---- figures ----------------------------------------------------------------------------------

def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def curves_figure(metrics: pd.DataFrame, best_epoch: int | None) -> Figure:
    """Loss, accuracy and learning rate per epoch; the validation-selected epoch dashed."""
    panels = [(title, [c for c in cols if c in metrics.columns]) for title, cols in
              (("loss", LOSS_COLUMNS), ("segment accuracy", ACC_COLUMNS), ("learning rate", ("lr",)))]
    panels = [(t, cols) for t, cols in panels if cols]
    fig = Figure(figsize=(3.7 * len(panels), 3.9))
    for ax, (title, cols) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels):
        for col in cols:
            ax.plot(metrics["epoch"], metrics[col], marker="." if len(metrics) < 30 else None,
                    label=col.replace("_", " "))
        if best_epoch is not None and best_epoch > 0:
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=9)
        # Below the axes: inside, a legend covers part of some curve (the lr one falls corner to corner).
        ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def per_class_figure(tables: dict[str, pd.DataFrame]) -> Figure:
    """Horizontal bars of per-class test accuracy, one bar per label set."""
    classes = sorted(set().union(*(t["class"].tolist() for t in tables.values())))
    y = np.arange(len(classes))
    height = 0.8 / len(tables)
    fig = Figure(figsize=(8, 0.42 * len(classes) + 1.3))
    ax = fig.subplots()
    for i, (label_set, table) in enumerate(tables.items()):
        acc = table.set_index("class")["accuracy"].reindex(classes)
        bars = ax.barh(y + (i - (len(tables) - 1) / 2) * height, acc.to_numpy(), height, label=label_set.upper())
        ax.bar_label(bars, labels=["" if np.isnan(a) else f"{a:.2f}" for a in acc], fontsize=8, padding=2)
    ax.set_yticks(y, [f"{short_name(c)} ({c})" for c in classes], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("test segment accuracy (recall of the class)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=9, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(tables), frameon=False)
    fig.tight_layout()
    return fig


def confusion_figure(counts: np.ndarray, title: str) -> Figure:
    """Row-normalised confusion matrix (each true class's segments sum to 1); empty rows blank."""
    totals = counts.sum(1, keepdims=True)
    rates = np.where(totals > 0, counts / np.maximum(totals, 1), np.nan)
    fig = Figure(figsize=(11, 10.5))
    ax = fig.subplots()
    im = ax.imshow(rates, cmap=colormaps["Blues"].with_extremes(bad="#e4e4e4"), vmin=0, vmax=1)
    names = [f"{short_name(c)} ({c})" for c in range(N_CLASSES)]
    ax.set_xticks(range(N_CLASSES), names, rotation=90, fontsize=9)
    ax.set_yticks(range(N_CLASSES), [f"{n}: {int(t)}" for n, t in zip(names, totals[:, 0])], fontsize=9)
    ax.set_xlabel("predicted class", fontsize=10)
    ax.set_ylabel("true class: its number of test segments (grey row: none in the test split)", fontsize=10)
    ax.set_title(title, fontsize=11)
    fig.colorbar(im, ax=ax, fraction=0.04, label="fraction of the true class's segments")
    fig.tight_layout()
    return fig


def sample_videos(p: SplitPredictions, per_kind: int) -> list[tuple[str, int]]:
    """(kind, index) of `per_kind` best, worst and typical (nearest the median) test videos.
    Videos are scored by segment accuracy, ties broken by the mean probability of the true class."""
    n = len(p.labels)
    acc = (p.pred == p.labels).mean(1)
    true_prob = np.take_along_axis(p.probs, p.labels[..., None], -1)[..., 0].mean(1)
    order = np.lexsort((true_prob, acc))  # ascending: worst first
    chosen, picks = set(), []
    median = order[n // 2] if n else None
    typical = sorted(order, key=lambda i: (abs(acc[i] - acc[median]), abs(true_prob[i] - true_prob[median])))
    for kind, candidates in (("best", order[::-1]), ("worst", order), ("typical", typical)):
        for i in [int(i) for i in candidates if int(i) not in chosen][:per_kind]:
            chosen.add(i)
            picks.append((kind, i))
    return picks


def text_colour(colour) -> str:
    """Black or white, whichever reads better on `colour` (relative luminance, as WCAG defines it)."""
    channels = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in to_rgb(colour)]
    luminance = 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]
    return "black" if luminance > 0.179 else "white"


def timeline_label(name: str, confidence: float | None, seconds: float) -> str:
    """The text of an event bar `seconds` wide: the name, then the mean confidence of a predicted
    event; on two lines when they do not fit on one, and the name shortened only when it does not
    fit alone ('Ukulele' in a 1-s bar: 'Ukulele' over '0.80', not 'Ukule… 0.80')."""
    fits = int(seconds * TIMELINE_CHARS_PER_SECOND)
    number = "" if confidence is None else f"{confidence:.2f}"
    if len(name) + 1 + len(number) <= fits or not number:
        return f"{name} {number}".rstrip() if len(name) <= fits else name[:max(fits - 1, 1)] + "…"
    return (name if len(name) <= fits else name[:max(fits - 1, 1)] + "…") + "\n" + number


def timelines_figure(p: SplitPredictions, picks: list[tuple[str, int]]) -> Figure:
    """For each picked video, a 'true' and a 'predicted' lane of event intervals over 0-10 s in
    class colours, and under them a strip marking each segment right (green) or wrong (red).
    The foot of each wrong segment of the predicted lane is hatched red too, so an error shows
    even where two class colours look alike."""
    fig = Figure(figsize=(11, 1.75 * len(picks) + 0.5))
    axes = np.atleast_1d(fig.subplots(len(picks), 1))
    end = N_SEGMENTS * SEGMENT_SECONDS
    for ax, (kind, i) in zip(axes, picks):
        pred, labels, probs = p.pred[i], p.labels[i], p.probs[i]
        for lane, classes in ((2, labels), (1, pred)):
            ax.broken_barh([(0, end)], (lane - 0.4, 0.8), facecolors=CLASS_COLOURS[BACKGROUND])
            for c, first, stop in segment_runs(classes):
                x, w = first * SEGMENT_SECONDS, (stop - first) * SEGMENT_SECONDS
                ax.broken_barh([(x, w)], (lane - 0.4, 0.8), facecolors=CLASS_COLOURS[c], edgecolor="black",
                               linewidth=0.5)
                text = timeline_label(short_name(c), probs[first:stop, c].mean() if lane == 1 else None, w)
                # Two lines sit higher, clear of the hatched foot of a wrong predicted segment.
                ax.text(x + w / 2, lane + (0.1 if "\n" in text else 0), text, ha="center", va="center",
                        fontsize=8, linespacing=1.0, clip_on=True, color=text_colour(CLASS_COLOURS[c]))
        right = pred == labels
        for t in range(N_SEGMENTS):
            x = t * SEGMENT_SECONDS
            ax.broken_barh([(x, SEGMENT_SECONDS)], (0.2, 0.3), facecolors=RIGHT if right[t] else WRONG,
                           edgecolor="white", linewidth=1)
            if not right[t]:  # the lower part only: the label in the middle stays readable
                ax.broken_barh([(x, SEGMENT_SECONDS)], (0.6, 0.22), facecolors="white", edgecolor=WRONG,
                               hatch="////", linewidth=1)
        ax.set_xlim(0, end)
        ax.set_ylim(0.1, 2.5)
        ax.set_xticks(np.arange(N_SEGMENTS + 1) * SEGMENT_SECONDS)
        ax.set_yticks([0.35, 1, 2], ["right?", "predicted", "true"], fontsize=9)
        ax.tick_params(axis="x", labelsize=9)
        ax.set_title(f"{kind}: test video row {p.rows[i]}, {int(right.sum())}/{N_SEGMENTS} segments correct",
                     fontsize=10, loc="left")
    axes[-1].set_xlabel("seconds (grey: background; number: mean confidence of the predicted class; "
                        "green/red: segment right/wrong)", fontsize=9)
    fig.tight_layout()
    return fig


# ---- HTML -------------------------------------------------------------------------------------

def _table(rows: list[tuple[str, object]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table class='kv'>{cells}</table>"


def _fmt(x) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def render_html(run_dir: Path, sections: list[Section]) -> str:
    body = []
    for s in sections:
        body.append(f"<section><h2>{html.escape(s.title)}</h2>")
        body += [f"<p class='note'>{html.escape(n)}</p>" for n in s.notes]
        for name, data, caption in s.images:
            uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
            body.append(f"<figure><img src='{uri}' alt='{html.escape(caption)}'><figcaption>{html.escape(caption)} "
                        f"<span class='file'>({html.escape(name)})</span></figcaption></figure>")
        body.append(s.html + "</section>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{html_mark("report")}
<title>avel-dgl report: {html.escape(run_dir.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.2em; border-bottom: 1px solid #ccc; padding-bottom: .2em; }}
table {{ border-collapse: collapse; font-size: .9em; margin: .5em 0; }}
th, td {{ border: 1px solid #ddd; padding: .25em .6em; text-align: left; }}
th {{ background: #f4f4f4; }} .num td {{ text-align: right; font-variant-numeric: tabular-nums; }}
.num td:nth-child(2), .num th {{ text-align: left; }}
img {{ max-width: 100%; height: auto; display: block; }} figure {{ margin: 1em 0; }}
figcaption {{ font-size: .9em; color: #333; margin-top: .3em; }} figcaption .file {{ color: #777; }}
.note {{ background: #fff6d6; border-left: 4px solid #e0b000; padding: .4em .8em; }}
</style></head><body>
<h1>avel-dgl run report: {html.escape(str(run_dir))}</h1>
{''.join(body)}
</body></html>
"""


def summary_section(config: dict, results: dict | None, metrics: pd.DataFrame) -> Section:
    m, t = config.get("model", {}), config.get("train", {})
    rows = [("preset", config.get("preset")), ("variant", m.get("variant")), ("task", t.get("task")),
            ("width / blocks", f"{m.get('width')} / {m.get('blocks')}"), ("epochs run", len(metrics)),
            ("batch size", t.get("batch_size")), ("optimizer / lr", f"{t.get('optimizer')} / {t.get('lr')}"),
            ("replicate / link", f"{t.get('replicate')} / {t.get('link')}"), ("seed", t.get("seed"))]
    section = Section("Run")
    if results is None:
        section.notes.append("results.json not found: the run has not finished testing; test figures come from "
                             "best.pt if it exists.")
    else:
        rows += [(k.replace("_", " "), _fmt(v)) for k, v in results.items() if k != "seed"]  # seed: above
    section.html = _table(rows)
    return section


def run_data_folder(run_dir: Path, results: dict | None, data_dir: str | Path | None) -> Path | None:
    """The data folder whose test split the report predicts: --data, else the one recorded in
    results.json, else (an unfinished run) in last.pt. A folder that is not there is refused
    before anything is written, saying that --data gives its new place."""
    files = RunFolder(run_dir)
    if data_dir is not None:
        where, data = "--data", data_dir
    elif results is not None and results.get("data"):
        where, data = f"recorded in {files.results}", results["data"]
    elif files.last.is_file():
        from avel_dgl.checkpoint import read_checkpoint

        where, data = f"recorded in {files.last}", read_checkpoint(files.last).get("training", {}).get("data_dir")
    else:
        return None
    if data is None:
        return None
    if not Path(data).is_dir():
        if data_dir is not None:
            raise AvelError(f"--data: {data}: data folder not found")
        raise AvelError(f"--data: the run's data folder {data} ({where}) is not found; if it moved, give its new "
                        f"place with --data DIR")
    return Path(data)


REPORT_FOLDER = OwnedFolder("report", REPORT_FILE, lambda name: name in REPORT_FILES, swapped=True)


def build_report(run_dir: str | Path, runtime: Runtime, data_dir: str | Path | None = None,
                 out_dir: str | Path | None = None, per_kind: int = 2,
                 overwrite: bool = False) -> tuple[Path, list[str]]:
    """Write OUT_DIR/report.html and its PNGs (default OUT_DIR: RUN_DIR/report; an earlier report
    there is replaced only with `overwrite`); best.pt predicts the test split under `runtime`. Returns
    the HTML path and the notes of sections that are missing or suspicious. A progress bar counts
    the steps (avel_dgl.progress)."""
    run_dir = Path(run_dir)
    files = RunFolder(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else files.report
    config, metrics, results = read_run(run_dir)
    check_owned_folder(out_dir, REPORT_FOLDER, overwrite)  # refuse now, not after the predictions
    data = run_data_folder(run_dir, results, data_dir) if files.best.is_file() else None
    steps = bar(total=4, desc="report", unit="step")
    best_epoch = results.get("best_epoch") if results else None
    sections = [summary_section(config, results, metrics)]

    curves = Section("Training curves", [("curves.png", png(curves_figure(metrics, best_epoch)),
                                          "Loss, segment accuracy and learning rate per epoch; the dashed line "
                                          "marks the epoch chosen on validation (best.pt).")],
                     html="<p>Train loss and accuracy: means over the epoch's batches while learning (dropout "
                          "on). Validation: the model after the epoch, in eval mode. Loss is the task's "
                          "objective (SEL: segment cross-entropy; WSEL: MIL video cross-entropy); accuracy is "
                          "always segment accuracy.</p>")
    if not any(c in metrics.columns for c in LOSS_COLUMNS + ACC_COLUMNS):
        curves.notes.append(f"metrics.csv has none of the columns {', '.join(LOSS_COLUMNS + ACC_COLUMNS)}.")
    sections.append(curves)
    steps.update()

    # Test predictions of best.pt, for the confusion matrices and timelines (and per-class
    # accuracy when the run did not write its tables).
    preds, why_not = None, None
    if not files.best.is_file():
        why_not = f"{files.best} not found"
    elif data is None:
        why_not = "the data folder is unknown (the run records none): pass --data DIR (and --overwrite)"
    else:
        preds = test_predictions(files.best, data, runtime)
    steps.update()

    per_class = Section("Test accuracy per class")
    for label_set, why in ((results or {}).get("skipped") or {}).items():
        per_class.notes.append(f"{label_set.upper()} was skipped: {why}.")
    tables = {}
    for label_set in LABEL_SETS:
        csv_file = files.per_class(label_set)
        if csv_file.is_file():
            tables[label_set] = pd.read_csv(csv_file)
        elif preds is not None and label_set in preds:
            p = preds[label_set]
            tables[label_set] = per_class_table(torch.from_numpy(p.pred), torch.from_numpy(p.labels))
            per_class.notes.append(f"{csv_file.name} not found: {label_set.upper()} accuracies computed here.")
    if tables:
        per_class.images.append(("per_class.png", png(per_class_figure(tables)),
                                 "Share of each class's test segments predicted correctly, per label set "
                                 "(classes absent from the test split are left out)."))
        merged = pd.concat([t.set_index(["class", "name"])[["segments", "accuracy"]].add_suffix(f" {ls}")
                            for ls, t in tables.items()], axis=1).reset_index()
        per_class.html = merged.to_html(index=False, float_format=lambda x: f"{x:.4f}", na_rep="", classes="num",
                                        border=0)
    else:
        per_class.notes.append(f"no per_class_<set>.csv in the run and no predictions ({why_not}).")
    sections.append(per_class)
    steps.update()

    confusion = Section("Confusion matrices (test segments)")
    timelines = Section("Timelines of test videos: true vs predicted events (O-AVE labels)")
    if preds is None:
        confusion.notes.append(f"not made: {why_not}.")
        timelines.notes.append(f"not made: {why_not}.")
    else:
        for label_set, p in preds.items():
            acc = global_accuracy(torch.from_numpy(p.pred), torch.from_numpy(p.labels))
            recorded = (results or {}).get(f"test_acc_{label_set}")
            if recorded is not None and abs(recorded - acc) > ACC_TOLERANCE:
                confusion.notes.append(f"{label_set.upper()}: best.pt scores {acc:.4f} on {data} here but "
                                       f"results.json records {recorded:.4f}; the data folder may have changed.")
            title = f"{label_set.upper()}: {len(p.rows)} videos, global accuracy {acc:.4f} (rows: true, row-normalised)"
            confusion.images.append((f"confusion_{label_set}.png",
                                     png(confusion_figure(confusion_matrix(torch.from_numpy(p.pred),
                                                                           torch.from_numpy(p.labels)), title)),
                                     f"{label_set.upper()} confusion matrix: each row is a true class, its cells "
                                     f"the share of that class's test segments given each predicted class."))
        p = preds["o-ave"]
        if len(p.rows):
            timelines.images.append(("timelines.png", png(timelines_figure(p, sample_videos(p, per_kind))),
                                     f"True and predicted events of the {per_kind} best, worst and typical test "
                                     f"videos; the strip under each pair marks every segment right (green) or "
                                     f"wrong (red), and the foot of a wrong predicted segment is hatched red."))
        else:
            timelines.notes.append("the test split is empty.")
    sections += [confusion, timelines]

    _write_atomic(out_dir, run_dir, sections)
    steps.update()
    steps.close()
    notes = [n for s in sections for n in s.notes]
    return out_dir / REPORT_FILE, list(dict.fromkeys(notes))  # each note once (sections may share one)


def _write_atomic(out_dir: Path, run_dir: Path, sections: list[Section]) -> None:
    """Write the HTML and PNGs into a folder beside `out_dir`, then swap it in (already checked by
    `check_owned_folder`: an earlier report at most)."""
    with writing_folder(out_dir, "an earlier report, if any, is intact") as folder:
        for s in sections:
            for name, data, _ in s.images:
                (folder / name).write_bytes(data)
        (folder / REPORT_FILE).write_text(render_html(run_dir, sections), encoding="utf-8")
