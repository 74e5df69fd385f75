"""Using a trained model on videos: segment class probabilities, events merged into intervals in
seconds, streamed over a data folder or new feature files in chunks so memory stays bounded.

An event is a run of consecutive segments whose most probable class is the same event class
(background, index 28, is never an event). Segment t covers [t, t + 1) seconds (AVE segments are
1 s long, section 4), so a run of segments first..last is the interval [first, last + 1) s. Its
confidence is the mean probability of its class over the run.

Videos come from
- a data folder: its audio file and the pooled visual cache, rows of one split, all rows, or
  listed rows (h5 row indices, as in the order files);
- a pair of feature files for new videos, without labels: audio (N, 10, 128) and visual either
  full maps (N, 10, 7, 7, 512) (pooled here chunk by chunk, as the cache pools) or pooled
  (N, 10, 512).
Either way only one chunk of features and probabilities is in memory at a time, and outputs are
written row by row to a temporary file that is renamed into place when complete.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
import torch

from avel_dgl import engine
from avel_dgl.data.ave import (AUDIO_FILE, BACKGROUND, CLASS_NAMES, FEATURE_KEY, N_SEGMENTS, SPECS,
                               SPLITS, VISUAL_DIM, VISUAL_FILE, ArraySpec, check_finite, check_orders,
                               check_row_counts, inspect_array, open_dataset, read_rows)
from avel_dgl.data.cache import ensure_pooled_cache, pool_maps
from avel_dgl.errors import AvelError
from avel_dgl.outputs import check_output
from avel_dgl.format import event_columns, segment_columns
from avel_dgl.outputs import mark, writing_all_or_none
from avel_dgl.progress import bar

SEGMENT_SECONDS = 1.0
PROB_DECIMALS = 6  # probabilities in the outputs are rounded to this many decimals
OUTPUT_SUFFIXES = (".json", ".csv")

# The layouts of feature files: audio and full maps as in a data folder, or maps already pooled.
AUDIO_SPEC, MAPS_SPEC = SPECS[AUDIO_FILE], SPECS[VISUAL_FILE]
POOLED_SPEC = ArraySpec(FEATURE_KEY, ("N", N_SEGMENTS, VISUAL_DIM), "feature")


# ---- events from probabilities ---------------------------------------------------------------

def segment_runs(classes) -> list[tuple[int, int, int]]:
    """Runs of consecutive segments of one event class, background excluded, as
    (class, first segment, end segment exclusive), in time order."""
    runs, start = [], 0
    classes = [int(c) for c in classes]
    for t in range(1, len(classes) + 1):
        if t == len(classes) or classes[t] != classes[start]:
            if classes[start] != BACKGROUND:
                runs.append((classes[start], start, t))
            start = t
    return runs


def events_from_probs(probs: np.ndarray) -> list[dict]:
    """The detected events of one video from its (T, C) segment probabilities: each segment takes
    its most probable class, runs of one event class merge into [start, end) seconds, and the
    confidence is the run's mean probability of that class."""
    return [{"class": c, "name": CLASS_NAMES[c], "start": first * SEGMENT_SECONDS, "end": end * SEGMENT_SECONDS,
             "confidence": round(float(probs[first:end, c].mean()), PROB_DECIMALS)}
            for c, first, end in segment_runs(probs.argmax(-1))]


# ---- where the videos come from ----------------------------------------------------------------

@dataclass
class VideoSource:
    """Feature files to read and the rows of them to predict for, in output order."""

    audio: Path
    visual: Path
    visual_spec: ArraySpec  # MAPS_SPEC (pooled here, chunk by chunk) or POOLED_SPEC
    rows: np.ndarray
    description: dict = field(default_factory=dict)  # recorded in the output header


def parse_selection(text: str) -> str | np.ndarray:
    """--subset: a split name, 'all', or comma-separated row indices, each once (a repeated row
    is refused rather than silently predicted twice or dropped)."""
    text = text.strip()
    if text in SPLITS or text == "all":
        return text
    try:
        rows = np.array([int(x) for x in text.split(",")], dtype=np.int64)
    except ValueError:
        raise AvelError(f"--subset: expected one of {', '.join(SPLITS)}, all, or comma-separated row indices "
                        f"(e.g. 3,17,42), found '{text}'") from None
    values, counts = np.unique(rows, return_counts=True)
    if (counts > 1).any():
        row = int(values[np.argmax(counts > 1)])
        raise AvelError(f"--subset: expected each row once, found row {row} {int(counts.max())} times in '{text}'")
    return rows


def visual_spec_of(path: Path) -> ArraySpec:
    """New videos' visual file: pooled when its array has rank 3, else full maps (open_dataset
    then checks the whole header and names what does not fit)."""
    try:
        with h5py.File(path, "r") as f:
            rank = f[FEATURE_KEY].ndim
    except (OSError, KeyError, AttributeError, TypeError):
        rank = None  # missing, unreadable or keyless: open_dataset says which
    return POOLED_SPEC if rank == 3 else MAPS_SPEC


def data_folder_source(data_dir: str | Path, selection: str | np.ndarray) -> VideoSource:
    """Videos of an AVE-format folder: a split's rows, all rows, or the given rows. The visual
    features come from the pooled cache (built on first use, streaming)."""
    data_dir = Path(data_dir)
    n = check_row_counts(data_dir, [AUDIO_FILE, VISUAL_FILE])
    if isinstance(selection, str) and selection == "all":
        rows = np.arange(n, dtype=np.int64)
    elif isinstance(selection, str):
        rows = check_orders(data_dir, n)[selection]
    else:
        rows = np.asarray(selection, dtype=np.int64)
        outside = (rows < 0) | (rows >= n)
        if outside.any():
            raise AvelError(f"--subset: expected row indices in [0, {n}) (the videos of {data_dir}), "
                            f"found {int(rows[np.argmax(outside)])}")
    visual, _ = ensure_pooled_cache(data_dir, VISUAL_FILE)
    split = selection if isinstance(selection, str) else "rows"
    return VideoSource(data_dir / AUDIO_FILE, visual, POOLED_SPEC, rows, {"data": str(data_dir), "split": split})


def feature_files_source(audio: str | Path, visual: str | Path) -> VideoSource:
    """New videos given as an audio file and a visual file (full maps or pooled), no labels."""
    audio, visual = Path(audio), Path(visual)
    visual_spec = visual_spec_of(visual)
    n_audio = inspect_array(audio, AUDIO_SPEC).shape[0]
    try:
        n_visual = inspect_array(visual, visual_spec).shape[0]
    except AvelError as e:
        if visual_spec is POOLED_SPEC:
            raise
        raise AvelError(f"{e} (pooled features {POOLED_SPEC.shape_text()} are accepted too)") from None
    if n_audio != n_visual:
        raise AvelError(f"{visual}: key '{FEATURE_KEY}': expected {n_audio} rows (as in {audio}), found {n_visual}")
    return VideoSource(audio, visual, visual_spec, np.arange(n_audio, dtype=np.int64),
                       {"audio": str(audio), "visual": str(visual)})


def read_chunks(source: VideoSource, chunk: int) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """(rows, audio (b, 10, 128), pooled visual (b, 10, 512)) float32, `chunk` videos at a time,
    checked finite (non-finite map cells make their pooled value non-finite)."""
    with open_dataset(source.audio, AUDIO_SPEC) as a, open_dataset(source.visual, source.visual_spec) as v:
        for start in range(0, len(source.rows), chunk):
            rows = source.rows[start:start + chunk]
            audio = read_rows(a, rows, str(source.audio))
            visual = read_rows(v, rows, str(source.visual))
            if source.visual_spec is MAPS_SPEC:
                visual = pool_maps(visual)
            for path, x in ((source.audio, audio), (source.visual, visual)):
                check_finite(x, str(path), rows=rows)
            yield rows, torch.from_numpy(audio.astype(np.float32)), torch.from_numpy(visual.astype(np.float32))


def predict_probs(model: torch.nn.Module, source: VideoSource,
                  batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows, segment class probabilities (b, 10, 29)) per chunk of `batch_size` videos."""
    for rows, audio, visual in read_chunks(source, batch_size):
        logits = engine.feature_logits(model, audio, visual, batch_size)
        yield rows, torch.softmax(logits, dim=-1).cpu().numpy()


# ---- writing ---------------------------------------------------------------------------------

OUT_KIND = "a file name ending in .json or .csv"


def output_files(out: str | Path, overwrite: bool = False) -> list[Path]:
    """The files an output name stands for (OUT.json; or OUT.csv and OUT_segments.csv), each
    checked by `outputs.check_output` (folder writable, not a folder, an existing file replaced
    only with `overwrite`). Called before any prediction, so a bad --out costs nothing."""
    out = Path(out)
    if out.is_dir():
        raise AvelError(f"--out: {out} is a folder, expected {OUT_KIND}")
    if out.suffix not in OUTPUT_SUFFIXES:
        raise AvelError(f"--out: expected {OUT_KIND}, found '{out.name}'")
    targets = [out] if out.suffix == ".json" else [out, segments_csv_path(out)]
    return [check_output(t, overwrite, kind=OUT_KIND if t == out else "a file (the per-segment table)")
            for t in targets]


def segments_csv_path(out: Path) -> Path:
    """A .csv output is two tables: events in OUT.csv, per-segment probabilities beside it."""
    return out.with_name(out.stem + "_segments.csv")


def _video_record(row: int, probs: np.ndarray, extra=None) -> dict:
    return {"row": int(row), **(extra(int(row)) if extra else {}), "events": events_from_probs(probs),
            "segment_classes": probs.argmax(-1).tolist(),
            "segment_probs": np.round(probs.astype(np.float64), PROB_DECIMALS).tolist()}


def _write_json(chunks, f, header: dict, extra=None) -> tuple[int, int]:
    videos = events = 0
    # The header as JSON with an empty "videos" list last; write it up to that list's "[" and
    # stream the video records into it.
    head = json.dumps({**header, "videos": []}, indent=1)
    f.write(head[:head.rindex("[") + 1] + "\n")
    for rows, probs in chunks:
        for row, p in zip(rows, probs):
            record = _video_record(row, p, extra)
            f.write((",\n" if videos else "") + json.dumps(record))
            videos, events = videos + 1, events + len(record["events"])
    f.write("\n]}\n")
    return videos, events


def _write_csv(chunks, f_events, f_segments, extra=None, extra_columns=()) -> tuple[int, int]:
    ev = csv.writer(f_events)
    ev.writerow(event_columns(extra_columns))
    seg = csv.writer(f_segments)
    seg.writerow(segment_columns(extra_columns))
    videos = events = 0
    for rows, probs in chunks:
        for row, p in zip(rows, probs):
            record = _video_record(row, p, extra)
            ids = [record["row"], *(record[c] for c in extra_columns)]
            for e in record["events"]:
                ev.writerow([*ids, e["class"], e["name"], e["start"], e["end"], e["confidence"]])
            for t, (c, ps) in enumerate(zip(record["segment_classes"], record["segment_probs"])):
                seg.writerow([*ids, t, t * SEGMENT_SECONDS, (t + 1) * SEGMENT_SECONDS, c, CLASS_NAMES[c], *ps])
            videos, events = videos + 1, events + len(record["events"])
    return videos, events


def write_predictions(chunks: Iterator[tuple[np.ndarray, np.ndarray]], out: str | Path,
                      header: dict, overwrite: bool = False, extra=None,
                      extra_columns: tuple = (), command: str = "predict") -> tuple[list[Path], int, int]:
    """Stream (rows, probs) chunks into OUT.json (one file) or OUT.csv (+ OUT_segments.csv).
    The files are written under temporary names and renamed together only when all videos are
    in (outputs.writing_all_or_none), so a failure (a full disk included) leaves no partial output
    and the previous files, if any, as they were. A JSON file is marked as `command`'s. Returns the files written, the video and event counts.
    `extra(row) -> dict` adds fields to each video's record after its row (localize: the video's
    path); `extra_columns` names those that also become CSV columns. A video's probabilities may
    have any number of segments T (T, C)."""
    targets = output_files(out, overwrite)
    with writing_all_or_none(targets) as handles:
        if targets[0].suffix == ".json":
            header = {"written_by": mark(command), **header, "segment_seconds": SEGMENT_SECONDS,
                      "background": BACKGROUND, "classes": list(CLASS_NAMES)}
            videos, events = _write_json(chunks, handles[0], header, extra)
        else:
            videos, events = _write_csv(chunks, *handles, extra, extra_columns)
    return targets, videos, events


def predict_to_file(model: torch.nn.Module, source: VideoSource, out: str | Path, batch_size: int = 256,
                    checkpoint: str | Path | None = None, overwrite: bool = False) -> tuple[list[Path], int, int]:
    """Predict every video of `source` with `model`, write the events and probabilities (a
    progress bar over the chunks, see avel_dgl.progress)."""
    if batch_size < 1:
        raise AvelError(f"--batch-size: expected a positive integer, found {batch_size}")
    header = {"checkpoint": None if checkpoint is None else str(checkpoint), "source": source.description}
    chunks = bar(predict_probs(model, source, batch_size), total=-(-len(source.rows) // batch_size),
                 desc="predicting", unit="chunk")
    return write_predictions(chunks, out, header, overwrite)
