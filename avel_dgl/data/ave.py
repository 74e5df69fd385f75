"""The AVE HDF5 layout, file by file: what each file must hold, reading it with its header checked,
and the checks on values (finite features, one-hot labels, split orders, Annotations.txt).

A data folder holds one HDF5 file per array (the layout of the public AVE release, Tian et al. 2018):

| file                      | key        | shape               | meaning                                  |
|---------------------------|------------|---------------------|------------------------------------------|
| audio_feature.h5          | avadataset | (N, 10, 128)        | VGGish audio feature per 1-s segment     |
| visual_feature.h5         | avadataset | (N, 10, 7, 7, 512)  | VGG19 pool5 map per segment              |
| labels.h5                 | avadataset | (N, 10, 29)         | one-hot segment labels (O-AVE)           |
| right_labels.h5           | avadataset | (N, 10, 29)         | corrected segment labels (C-AVE)         |
| mil_labels.h5             | avadataset | (N, 29)             | one-hot video label                      |
| train/val/test_order.h5   | order      | (n_split,)          | int64 row indices into the arrays above  |
| labels_noisy.h5           | avadataset | (M, 29)             | WSEL extra videos, all background        |
| audio_feature_noisy.h5    | avadataset | (M, 10, 128)        | their audio features                     |
| visual_feature_noisy.h5   | avadataset | (M, 10, 7, 7, 512)  | their visual maps                        |
| Annotations.txt           | -          | N lines             | Category&VideoID&Quality&Start&End       |

Features may be float32 or float64 on disk; the readers here return them as stored (the loaders of
avel_dgl.data.dataset convert to float32, labels and indices to int64). Class index 28 is background.

Every check raises AvelError with one line naming the file, the key, and what was expected
against what was found. Rows of a label file that set several classes are not errors: they
resolve to the lowest set class index and are reported with a MultiLabelWarning. The visual
maps are too large to scan here; their NaN/Inf scan happens while the pooled cache streams them
(avel_dgl.data.cache). docs/DATA.md lists the rules.

Dependencies run one way: this module reads single files; avel_dgl.data.cache builds the pooled
visual cache with it; avel_dgl.data.dataset checks whole folders and loads splits with both.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from avel_dgl.errors import AvelError

# The format's constants live in avel_dgl/format.py (no package imports, so the model layer can
# use them); they stay importable from here for code that reads data.
from avel_dgl.format import (ANNOTATIONS_FILE, AUDIO_DIM, AUDIO_FILE, BACKGROUND, CLASS_NAMES, FEATURE_KEY,  # noqa: F401
                             LABEL_SETS, LABELS_FILE, MIL_LABELS_FILE, N_CLASSES, N_EVENTS, N_SEGMENTS,
                             NOISY_AUDIO_FILE, NOISY_FILES, NOISY_LABELS_FILE, NOISY_VISUAL_FILE, ORDER_FILES,
                             ORDER_KEY, RIGHT_LABELS_FILE, SPLITS, VISUAL_DIM, VISUAL_FILE, VISUAL_MAP_SHAPE)


class MultiLabelWarning(UserWarning):
    """A label file sets more than one class in some rows; they resolve to the lowest index."""


@dataclass(frozen=True)
class ArraySpec:
    """What one HDF5 file of the layout must hold. `dims` starts with a symbolic row count."""

    key: str
    dims: tuple  # e.g. ("N", 10, 128); the first entry names the row count it shares
    kind: str  # "feature" (float32/float64), "label" (any numeric), "order" (integer)

    def shape_text(self) -> str:
        return "(" + ", ".join(map(str, self.dims)) + ")"


SPECS = {
    AUDIO_FILE: ArraySpec(FEATURE_KEY, ("N", N_SEGMENTS, AUDIO_DIM), "feature"),
    VISUAL_FILE: ArraySpec(FEATURE_KEY, ("N", N_SEGMENTS, *VISUAL_MAP_SHAPE), "feature"),
    LABELS_FILE: ArraySpec(FEATURE_KEY, ("N", N_SEGMENTS, N_CLASSES), "label"),
    RIGHT_LABELS_FILE: ArraySpec(FEATURE_KEY, ("N", N_SEGMENTS, N_CLASSES), "label"),
    MIL_LABELS_FILE: ArraySpec(FEATURE_KEY, ("N", N_CLASSES), "label"),
    NOISY_LABELS_FILE: ArraySpec(FEATURE_KEY, ("M", N_CLASSES), "label"),
    NOISY_AUDIO_FILE: ArraySpec(FEATURE_KEY, ("M", N_SEGMENTS, AUDIO_DIM), "feature"),
    NOISY_VISUAL_FILE: ArraySpec(FEATURE_KEY, ("M", N_SEGMENTS, *VISUAL_MAP_SHAPE), "feature"),
    **{name: ArraySpec(ORDER_KEY, ("n",), "order") for name in ORDER_FILES.values()},
}


@dataclass(frozen=True)
class ArrayInfo:
    """Header facts of one checked file (nothing of the data itself is read)."""

    file: str
    key: str
    shape: tuple
    dtype: str
    size_bytes: int


# ---------------------------------------------------------------------------------------------
# Reading one file, with its header checked

def _spec_for(path: Path) -> ArraySpec | None:
    return SPECS.get(Path(path).name)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _open_file(path: Path, key: str, shape_text: str | None = None) -> h5py.File:
    if not path.is_file():
        shape = f" of shape {shape_text}" if shape_text else ""
        if path.is_dir():
            raise AvelError(f"{path}: is a folder, expected an HDF5 file with key '{key}'{shape}")
        if path.parent.is_file():  # a file given where the data folder goes
            raise AvelError(f"{path.parent}: is a file, expected a data folder holding {path.name}")
        raise AvelError(f"{path}: file not found (expected an HDF5 file with key '{key}'{shape})")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise AvelError(f"{path}: expected an HDF5 file with key '{key}', "
                        f"found an unreadable file ({_one_line(e)})") from None


def _check_header(path: Path, dset: h5py.Dataset, spec: ArraySpec) -> None:
    """Rank, fixed dimensions and dtype of `dset` against `spec`."""
    shape = tuple(dset.shape)
    fixed_ok = len(shape) == len(spec.dims) and all(
        isinstance(d, str) or d == s for d, s in zip(spec.dims, shape))
    if not fixed_ok:
        raise AvelError(f"{path}: key '{spec.key}': expected shape {spec.shape_text()}, found {shape}")
    dtype = dset.dtype
    if spec.kind == "feature" and (dtype.kind != "f" or dtype.itemsize not in (4, 8)):
        raise AvelError(f"{path}: key '{spec.key}': expected dtype float32 or float64, found {dtype}")
    if spec.kind == "order" and dtype.kind not in "iu":
        raise AvelError(f"{path}: key '{spec.key}': expected an integer dtype (int64), found {dtype}")
    if spec.kind == "label" and dtype.kind not in "biuf":
        raise AvelError(f"{path}: key '{spec.key}': expected a numeric dtype, found {dtype}")


@contextmanager
def open_dataset(path: str | Path, spec: ArraySpec | None = None) -> Iterator[h5py.Dataset]:
    """Open the dataset of `path` after checking file, key, rank, shape and dtype against `spec`
    (by default the layout's spec for the file name). Reads no data."""
    path = Path(path)
    spec = spec or _spec_for(path)
    if spec is None:
        raise ValueError(f"no layout spec for {path.name}; pass one")
    f = _open_file(path, spec.key, spec.shape_text())
    with f:
        if spec.key in f and not isinstance(f[spec.key], h5py.Dataset):
            raise AvelError(f"{path}: expected key '{spec.key}' to be an array of shape {spec.shape_text()}, "
                            f"found a group (a folder of keys: {sorted(f[spec.key].keys())})")
        if spec.key not in f:
            raise AvelError(f"{path}: expected key '{spec.key}' with shape {spec.shape_text()}, "
                            f"found keys {sorted(f.keys())}")
        dset = f[spec.key]
        _check_header(path, dset, spec)
        yield dset


def inspect_array(path: str | Path, spec: ArraySpec | None = None) -> ArrayInfo:
    """Header facts of one layout file, checked; nothing of the data is read."""
    path = Path(path)
    with open_dataset(path, spec) as dset:
        return ArrayInfo(path.name, dset.name.lstrip("/"), tuple(dset.shape), str(dset.dtype),
                         path.stat().st_size)


def read_checked(path: str | Path, spec: ArraySpec | None = None) -> np.ndarray:
    """Read a whole layout file after checking its header (use only for the small files)."""
    path = Path(path)
    with open_dataset(path, spec) as dset:
        try:
            return dset[()]
        except OSError as e:
            raise AvelError(f"{path}: key '{dset.name.lstrip('/')}': expected readable data, "
                            f"found a read error ({_one_line(e)})") from None


def read_array(path: Path, key: str) -> np.ndarray:
    """Read one whole HDF5 dataset, with a one-line error naming the file and key. Files of the
    layout get their header checked too."""
    path = Path(path)
    spec = _spec_for(path)
    if spec is not None and spec.key == key:
        return read_checked(path, spec)
    f = _open_file(path, key)
    with f:
        if key not in f:
            raise AvelError(f"{path}: expected key '{key}', found keys {sorted(f.keys())}")
        return f[key][()]


def read_rows(dset: h5py.Dataset, rows: np.ndarray, source: str) -> np.ndarray:
    """dset[rows] in the order of `rows`, repeats allowed (h5py itself takes only increasing,
    unique indices); a contiguous run of rows is read as one slice, which h5py reads far faster.
    Only these rows are read, so callers can stream a file of any size chunk by chunk."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    n = dset.shape[0]
    outside = (rows < 0) | (rows >= n)
    if outside.any():
        raise AvelError(f"rows: expected indices in [0, {n}) of {source}, found {int(rows[np.argmax(outside)])}")
    if rows.size == 0:
        return np.empty((0, *dset.shape[1:]), dset.dtype)
    unique, inverse = np.unique(rows, return_inverse=True)
    try:
        if unique[-1] - unique[0] + 1 == unique.size:
            block = dset[int(unique[0]):int(unique[-1]) + 1]
        else:
            block = dset[unique.tolist()]
    except OSError as e:
        raise AvelError(f"{source}: key '{dset.name.lstrip('/')}': expected readable data, "
                        f"found a read error ({_one_line(e)})") from None
    return block[inverse]


# ---------------------------------------------------------------------------------------------
# Checks on values

def _where(index, rows: np.ndarray | None, names=("row", "segment", "class")) -> str:
    """'row 12, segment 3' for an index tuple into an array whose axis 0 are (mapped) rows."""
    index = [int(i) for i in index]
    if rows is not None:
        index[0] = int(rows[index[0]])
    return ", ".join(f"{name} {i}" for name, i in zip(names, index))


def check_finite(values: np.ndarray, source: str, key: str = FEATURE_KEY,
                 rows: np.ndarray | None = None) -> None:
    """Raise on the first NaN or Inf in a feature array (axis 0 = rows, axis 1 = segments)."""
    finite = np.isfinite(values)
    if finite.all():
        return
    first = np.unravel_index(np.argmin(finite), finite.shape)  # argmin of bool: first False
    value = values[first]
    what = "NaN" if np.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    raise AvelError(f"{source}: key '{key}': expected finite values, found {what} at "
                    f"{_where(first[:2], rows)}")


def _format_rows(rows: list[int], limit: int = 20) -> str:
    shown = ", ".join(map(str, rows[:limit]))
    return shown + (f", ... ({len(rows) - limit} more)" if len(rows) > limit else "")


def onehot_to_index(onehot: np.ndarray, source: str, key: str = FEATURE_KEY,
                    rows: np.ndarray | None = None) -> np.ndarray:
    """Class index per row of a one-hot array (..., 29).

    Every value must be 0 or 1 and every row must set at least one class, else AvelError. A row
    that sets several classes resolves to the lowest set index, with a MultiLabelWarning naming
    the rows. `rows` maps axis 0 to the file's row numbers for the messages (default: identity).
    """
    if onehot.shape[-1] != N_CLASSES:
        raise AvelError(f"{source}: key '{key}': expected last dimension {N_CLASSES}, "
                        f"found {onehot.shape[-1]}")
    is_one = onehot == 1
    bad = ~(is_one | (onehot == 0))  # also catches NaN
    if bad.any():
        first = np.unravel_index(np.argmax(bad), bad.shape)
        raise AvelError(f"{source}: key '{key}': expected one-hot values 0 or 1, found "
                        f"{onehot[first]} at {_where(first, rows, _label_axes(onehot.ndim))}")
    count = is_one.sum(-1)
    if (count == 0).any():
        first = np.unravel_index(np.argmin(count), count.shape)
        raise AvelError(f"{source}: key '{key}': expected one-hot rows with one class set, found "
                        f"an all-zero row at {_where(first, rows, _label_axes(onehot.ndim))}")
    multi = count > 1
    if multi.any():
        positions = np.unique(np.nonzero(multi)[0])
        file_rows = (positions if rows is None else np.asarray(rows)[positions]).tolist()
        warnings.warn(MultiLabelWarning(
            f"{source}: key '{key}': {len(file_rows)} row(s) set more than one class "
            f"(rows {_format_rows(file_rows)}); such segments take the lowest set class index"),
            stacklevel=2)
    return is_one.argmax(-1).astype(np.int64)  # argmax returns the first (lowest) True


def _label_axes(ndim: int) -> tuple:
    return ("row", "segment", "class") if ndim == 3 else ("row", "class")


def multi_label_rows(onehot: np.ndarray) -> list[int]:
    """Rows of a one-hot array (N, ..., 29) where some entry sets more than one class."""
    multi = (onehot == 1).sum(-1) > 1
    return np.unique(np.nonzero(multi)[0]).tolist()


def check_background(index: np.ndarray, source: str, key: str = FEATURE_KEY) -> None:
    """The WSEL extra videos must be background-only."""
    wrong = index != BACKGROUND
    if wrong.any():
        first = int(np.argmax(wrong))
        raise AvelError(f"{source}: key '{key}': expected background (class {BACKGROUND}) in every "
                        f"row, found class {int(index[first])} at row {first}")


def check_row_counts(data_dir: Path, names: list[str]) -> int:
    """Check the headers of `names` (files of one row-count group) and that they agree; returns
    the row count. The first name is the reference quoted in the message."""
    data_dir = Path(data_dir)
    reference, n = names[0], None
    for name in names:
        info = inspect_array(data_dir / name)
        if n is None:
            n = info.shape[0]
        elif info.shape[0] != n:
            raise AvelError(f"{data_dir / name}: key '{info.key}': expected {n} rows "
                            f"(as in {reference}), found {info.shape[0]}")
    return n


def read_order(data_dir: Path, split: str) -> np.ndarray:
    """One split's row indices, header-checked (range and overlap: check_orders)."""
    if split not in SPLITS:
        raise AvelError(f"split: expected one of {', '.join(SPLITS)}, found '{split}'")
    return read_checked(Path(data_dir) / ORDER_FILES[split]).astype(np.int64)


def check_orders(data_dir: str | Path, n: int) -> dict[str, np.ndarray]:
    """Read the three split files and check each is non-empty, in [0, n), free of repeats, and
    that no two splits share a row."""
    data_dir = Path(data_dir)
    orders = {}
    for split in SPLITS:
        path = data_dir / ORDER_FILES[split]
        order = read_order(data_dir, split)
        if order.size == 0:
            raise AvelError(f"{path}: key '{ORDER_KEY}': expected at least one row index, "
                            f"found an empty split")
        outside = (order < 0) | (order >= n)
        if outside.any():
            i = int(np.argmax(outside))
            raise AvelError(f"{path}: key '{ORDER_KEY}': expected row indices in [0, {n}), "
                            f"found {int(order[i])} at position {i}")
        values, counts = np.unique(order, return_counts=True)
        if (counts > 1).any():
            i = int(np.argmax(counts > 1))
            raise AvelError(f"{path}: key '{ORDER_KEY}': expected each row once, "
                            f"found row {int(values[i])} {int(counts[i])} times")
        orders[split] = order
    for a, b in combinations(SPLITS, 2):
        shared = np.intersect1d(orders[a], orders[b])
        if shared.size:
            raise AvelError(f"{data_dir / ORDER_FILES[b]}: key '{ORDER_KEY}': expected no rows "
                            f"shared with {ORDER_FILES[a]}, found {shared.size} "
                            f"(first: row {int(shared[0])})")
    return orders


# ---------------------------------------------------------------------------------------------
# Annotations.txt

ANNOTATION_COLUMNS = ("category", "video_id", "quality", "start", "end")


def read_annotations(path: str | Path):
    """Annotations.txt as a DataFrame (category, video_id, quality, start, end), one row per
    line in file order, so row i is HDF5 row i. VideoIDs repeat in the release: key by row."""
    import pandas as pd

    path = Path(path)
    form = "Category&VideoID&Quality&StartTime&EndTime"
    if path.is_dir():
        raise AvelError(f"{path}: is a folder, expected a text file of lines {form}")
    if not path.is_file():
        raise AvelError(f"{path}: file not found (expected lines {form})")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # tolerate a byte-order mark
    except UnicodeDecodeError as e:
        raise AvelError(f"{path}: expected UTF-8 text, found undecodable bytes ({e.reason})") from None
    while lines and not lines[-1].strip():  # trailing blank lines only; inner ones shift rows
        lines.pop()
    records = []
    for number, line in enumerate(lines, start=1):
        fields = line.split("&")
        if len(fields) != 5:
            raise AvelError(f"{path}: line {number}: expected 5 '&'-separated fields ({form}), "
                            f"found {len(fields)}")
        category, video_id, quality, start, end = (f.strip() for f in fields)
        try:
            start, end = int(start), int(end)
        except ValueError:
            raise AvelError(f"{path}: line {number}: expected integer StartTime and EndTime, "
                            f"found '{start}' and '{end}'") from None
        if not 0 <= start <= end <= N_SEGMENTS:
            raise AvelError(f"{path}: line {number}: expected 0 <= StartTime <= EndTime <= "
                            f"{N_SEGMENTS}, found {start}&{end}")
        records.append((category, video_id, quality, start, end))
    frame = pd.DataFrame.from_records(records, columns=list(ANNOTATION_COLUMNS))
    return frame.astype({"start": "int64", "end": "int64"})


def annotation_event_mask(annotations) -> np.ndarray:
    """(N, 10) bool: segment t of row i is inside that row's [start, end) event span."""
    t = np.arange(N_SEGMENTS)
    start = annotations["start"].to_numpy()[:, None]
    end = annotations["end"].to_numpy()[:, None]
    return (t >= start) & (t < end)


def annotation_class_index(annotations, source: str = ANNOTATIONS_FILE) -> np.ndarray:
    """(N,) int64 index into CLASS_NAMES of each row's category; unknown names are errors."""
    lookup = {name: i for i, name in enumerate(CLASS_NAMES[:N_EVENTS])}
    index = annotations["category"].map(lookup)
    if index.isna().any():
        row = int(np.argmax(index.isna().to_numpy()))
        raise AvelError(f"{source}: line {row + 1}: expected one of the {N_EVENTS} AVE class "
                        f"names, found '{annotations['category'].iloc[row]}'")
    return index.to_numpy().astype(np.int64)
