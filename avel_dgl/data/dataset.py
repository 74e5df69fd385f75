"""Whole AVE-format folders: validate_dir (every file checked, with a report of what was found) and
the split loaders (load_split, load_noisy) that return SplitData tensors, visual features pooled
through the cache.

It sits above both data/ave.py (single files: reading and checks) and data/cache.py (the pooled
visual cache, which itself reads through data/ave.py), so the imports run one way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from avel_dgl.data.ave import (ArrayInfo, annotation_class_index, check_background, check_finite, check_orders,
                               check_row_counts, inspect_array, multi_label_rows, onehot_to_index,
                               read_annotations, read_checked)
from avel_dgl.data.cache import ensure_pooled_cache, pooled_visual
from avel_dgl.errors import AvelError
from avel_dgl.format import (ANNOTATIONS_FILE, AUDIO_FILE, BACKGROUND, LABEL_SETS, LABELS_FILE, MIL_LABELS_FILE,
                             N_SEGMENTS, NOISY_AUDIO_FILE, NOISY_FILES, NOISY_LABELS_FILE, NOISY_VISUAL_FILE,
                             ORDER_FILES, RIGHT_LABELS_FILE, SPLITS, VISUAL_FILE)


@dataclass
class SplitData:
    """Dense tensors of one split, ready for batching. T = 10 segments."""

    audio: torch.Tensor  # (N, T, 128) float32
    visual: torch.Tensor  # (N, T, 512) float32, spatially pooled
    segment_labels: torch.Tensor  # (N, T) int64 in [0, 28]
    video_labels: torch.Tensor  # (N,) int64 in [0, 28]; 28 for background-only videos
    rows: torch.Tensor  # (N,) int64 row indices into the source arrays

    def __len__(self) -> int:
        return self.audio.shape[0]

    def subset(self, index: torch.Tensor) -> "SplitData":
        return SplitData(self.audio[index], self.visual[index], self.segment_labels[index],
                         self.video_labels[index], self.rows[index])

    @staticmethod
    def concat(parts: list["SplitData"]) -> "SplitData":
        return SplitData(*(torch.cat([getattr(p, f) for p in parts]) for f in
                           ("audio", "visual", "segment_labels", "video_labels", "rows")))


# ---------------------------------------------------------------------------------------------
# The whole folder

@dataclass
class LabelStats:
    """Summary of one segment-label file (labels.h5 or right_labels.h5)."""

    file: str
    event_classes: int  # distinct event classes (not background) among its segments
    background_share: float  # share of all segments labelled background
    event_lengths: np.ndarray  # (11,) videos with 0..10 event segments
    multi_label_rows: list[int]  # rows resolved by the lowest-index rule


@dataclass
class DataReport:
    """What validate_dir checked and found; cli/data_commands.py prints it."""

    data_dir: Path
    n_videos: int
    files: list[ArrayInfo]
    splits: dict[str, int]
    unassigned_rows: int  # rows in no split
    labels: list[LabelStats]  # labels.h5, then right_labels.h5 when present
    video_classes: int  # distinct event classes among mil_labels.h5
    mil_multi_label_rows: list[int]
    right_labels: bool  # right_labels.h5 present (and valid)
    noisy_videos: int | None  # WSEL extras: M when present and valid, None when absent
    annotations: int | None  # rows of Annotations.txt when present
    visual_scan: dict[str, str] = field(default_factory=dict)  # file -> how its values were scanned


def _label_stats(data_dir: Path, name: str) -> LabelStats:
    path = data_dir / name
    onehot = read_checked(path)
    index = onehot_to_index(onehot, str(path))  # errors and the multi-label warning
    events = index != BACKGROUND
    return LabelStats(
        file=name,
        event_classes=int(np.unique(index[events]).size),
        background_share=float(1 - events.mean()) if index.size else 0.0,
        event_lengths=np.bincount(events.sum(1), minlength=N_SEGMENTS + 1),
        multi_label_rows=multi_label_rows(onehot),
    )


def validate_dir(data_dir: str | Path, require_noisy: bool = False,
                 require_right_labels: bool = False, scan_visual: bool = False,
                 cache_dir: str | Path | None = None) -> DataReport:
    """Check a whole AVE-format folder; return what was found, or raise AvelError on the first
    problem. Optional parts (right_labels.h5, the WSEL extras, Annotations.txt) are checked when
    present; `require_*` makes their absence an error (the extras are all-or-nothing).

    Visual maps are checked by header only unless `scan_visual`: then they are streamed through
    the pooled cache (built or reused; a cache exists only for a scanned, finite source).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        found = "a file" if data_dir.exists() else "no such directory"
        raise AvelError(f"{data_dir}: expected a data folder, found {found}")
    right = require_right_labels or (data_dir / RIGHT_LABELS_FILE).exists()
    core = [AUDIO_FILE, VISUAL_FILE, LABELS_FILE, MIL_LABELS_FILE] + ([RIGHT_LABELS_FILE] if right else [])
    n = check_row_counts(data_dir, core)
    orders = check_orders(data_dir, n)

    check_finite(read_checked(data_dir / AUDIO_FILE), str(data_dir / AUDIO_FILE))
    labels = [_label_stats(data_dir, name) for name in core if name in LABEL_SETS.values()]
    mil_path = data_dir / MIL_LABELS_FILE
    mil = read_checked(mil_path)
    video_index = onehot_to_index(mil, str(mil_path))

    annotations = None
    if (data_dir / ANNOTATIONS_FILE).exists():
        frame = read_annotations(data_dir / ANNOTATIONS_FILE)
        if len(frame) != n:
            raise AvelError(f"{data_dir / ANNOTATIONS_FILE}: expected {n} lines (one per row of "
                            f"{AUDIO_FILE}), found {len(frame)}")
        annotation_class_index(frame, str(data_dir / ANNOTATIONS_FILE))
        annotations = len(frame)

    noisy = None
    if require_noisy or any((data_dir / name).exists() for name in NOISY_FILES):
        noisy = check_row_counts(data_dir, list(NOISY_FILES))
        path = data_dir / NOISY_LABELS_FILE
        check_background(onehot_to_index(read_checked(path), str(path)), str(path))
        check_finite(read_checked(data_dir / NOISY_AUDIO_FILE), str(data_dir / NOISY_AUDIO_FILE))

    files = [inspect_array(data_dir / name) for name in
             core + list(ORDER_FILES.values()) + (list(NOISY_FILES) if noisy is not None else [])]
    report = DataReport(
        data_dir=data_dir, n_videos=n, files=files,
        splits={split: int(order.size) for split, order in orders.items()},
        unassigned_rows=n - sum(order.size for order in orders.values()),
        labels=labels,
        video_classes=int(np.unique(video_index[video_index != BACKGROUND]).size),
        mil_multi_label_rows=multi_label_rows(mil),
        right_labels=right, noisy_videos=noisy, annotations=annotations,
    )
    visual_files = [VISUAL_FILE] + ([NOISY_VISUAL_FILE] if noisy is not None else [])
    for name in visual_files:
        if scan_visual:
            target, built = ensure_pooled_cache(data_dir, name, cache_dir=cache_dir)
            report.visual_scan[name] = f"{'scanned, cache built' if built else 'cache reused'}: {target}"
        else:
            report.visual_scan[name] = "header only (values not scanned)"
    return report


# ---------------------------------------------------------------------------------------------
# Loaders

def test_label_sets(data_dir: str | Path) -> tuple[str, ...]:
    """The label sets the test split of `data_dir` can be scored on: O-AVE always (labels.h5 is
    required), C-AVE when the optional right_labels.h5 is there."""
    return tuple(s for s in LABEL_SETS if s == "o-ave" or (Path(data_dir) / LABEL_SETS[s]).exists())


def skipped_label_sets(data_dir: str | Path) -> dict[str, str]:
    """{label set: why it is skipped} for those `test_label_sets` leaves out: what train records
    in results.json and what evaluate, report and ablate say."""
    return {s: f"{LABEL_SETS[s]} is absent from {data_dir}" for s in LABEL_SETS if s not in test_label_sets(data_dir)}


def load_split(data_dir: str | Path, split: str, label_set: str = "o-ave") -> SplitData:
    """Load one split as float32/int64 tensors, visual features pooled through the cache.

    label_set chooses the segment labels: 'o-ave' reads labels.h5, 'c-ave' right_labels.h5.
    The files read are checked as validate_dir would (headers, row counts, all three splits,
    finite audio, one-hot labels of this split's rows, visual values while the cache streams).
    """
    data_dir = Path(data_dir)
    if label_set not in LABEL_SETS:
        raise AvelError(f"label set: expected one of {', '.join(LABEL_SETS)}, found '{label_set}'")
    if split not in SPLITS:
        raise AvelError(f"split: expected one of {', '.join(SPLITS)}, found '{split}'")
    labels_name = LABEL_SETS[label_set]
    n = check_row_counts(data_dir, [AUDIO_FILE, VISUAL_FILE, labels_name, MIL_LABELS_FILE])
    rows = check_orders(data_dir, n)[split]
    audio = read_checked(data_dir / AUDIO_FILE)[rows]
    check_finite(audio, str(data_dir / AUDIO_FILE), rows=rows)
    visual = pooled_visual(data_dir, VISUAL_FILE)[rows]
    labels_path, mil_path = data_dir / labels_name, data_dir / MIL_LABELS_FILE
    segment = onehot_to_index(read_checked(labels_path)[rows], str(labels_path), rows=rows)
    video = onehot_to_index(read_checked(mil_path)[rows], str(mil_path), rows=rows)
    return SplitData(
        audio=torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
        visual=torch.from_numpy(np.ascontiguousarray(visual, dtype=np.float32)),
        segment_labels=torch.from_numpy(segment),
        video_labels=torch.from_numpy(video),
        rows=torch.from_numpy(rows),
    )


def load_noisy(data_dir: str | Path) -> SplitData:
    """The background-only videos used as extra negatives for weakly supervised training."""
    data_dir = Path(data_dir)
    n = check_row_counts(data_dir, list(NOISY_FILES))
    labels_path = data_dir / NOISY_LABELS_FILE
    video = onehot_to_index(read_checked(labels_path), str(labels_path))
    check_background(video, str(labels_path))
    audio = read_checked(data_dir / NOISY_AUDIO_FILE)
    check_finite(audio, str(data_dir / NOISY_AUDIO_FILE))
    visual = pooled_visual(data_dir, NOISY_VISUAL_FILE)
    return SplitData(
        audio=torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
        visual=torch.from_numpy(np.ascontiguousarray(visual, dtype=np.float32)),
        segment_labels=torch.from_numpy(np.repeat(video[:, None], N_SEGMENTS, axis=1)),
        video_labels=torch.from_numpy(video),
        rows=torch.arange(n, dtype=torch.int64),
    )
