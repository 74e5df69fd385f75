"""Tiny AVE-format folders for tests: consistent arrays, written one HDF5 file per array,
optionally with one named malformation (the MALFORMATIONS table)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import h5py
import numpy as np

from avel_dgl.data import ave

N_VIDEOS = 6  # 6 videos of float32 maps: a 6 MB visual file
SPLIT_SIZES = (4, 1, 1)
N_NOISY = 2


def ave_arrays(n_videos: int = N_VIDEOS, split_sizes=SPLIT_SIZES, n_noisy: int = N_NOISY,
               seed: int = 0, feature_dtype=np.float32) -> dict[str, np.ndarray]:
    """A consistent set of arrays, keyed by file name, plus 'annotations' (list of lines).

    Each video has one event class on a non-empty span [start, end); mil labels, right labels
    and annotations agree with it. Splits are a random partition of the rows. Returns fresh
    copies, so callers may edit them.
    """
    made = _ave_arrays(n_videos, tuple(split_sizes), n_noisy, seed, np.dtype(feature_dtype))
    return {name: value.copy() for name, value in made.items()}


@lru_cache(maxsize=8)  # the random maps take longer to draw than to write; draw them once
def _ave_arrays(n_videos, split_sizes, n_noisy, seed, feature_dtype):
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, ave.N_EVENTS, n_videos)
    starts = rng.integers(0, 5, n_videos)
    ends = starts + rng.integers(1, 6, n_videos)
    index = np.full((n_videos, ave.N_SEGMENTS), ave.BACKGROUND)
    for i in range(n_videos):
        index[i, starts[i]:ends[i]] = classes[i]
    eye = np.eye(ave.N_CLASSES, dtype=np.float32)
    perm = rng.permutation(n_videos)
    cuts = np.cumsum(split_sizes)
    arrays = {
        ave.AUDIO_FILE: rng.random((n_videos, ave.N_SEGMENTS, ave.AUDIO_DIM)).astype(feature_dtype),
        ave.VISUAL_FILE: rng.random((n_videos, ave.N_SEGMENTS, *ave.VISUAL_MAP_SHAPE)).astype(feature_dtype),
        ave.LABELS_FILE: eye[index],
        ave.RIGHT_LABELS_FILE: eye[index],
        ave.MIL_LABELS_FILE: eye[classes],
        ave.ORDER_FILES["train"]: perm[:cuts[0]].astype(np.int64),
        ave.ORDER_FILES["val"]: perm[cuts[0]:cuts[1]].astype(np.int64),
        ave.ORDER_FILES["test"]: perm[cuts[1]:cuts[2]].astype(np.int64),
        "annotations": [f"{ave.CLASS_NAMES[c]}&vid{i:04d}&good&{s}&{e}"
                        for i, (c, s, e) in enumerate(zip(classes, starts, ends))],
    }
    if n_noisy:
        arrays[ave.NOISY_LABELS_FILE] = eye[np.full(n_noisy, ave.BACKGROUND)]
        arrays[ave.NOISY_AUDIO_FILE] = rng.random((n_noisy, ave.N_SEGMENTS, ave.AUDIO_DIM)).astype(feature_dtype)
        arrays[ave.NOISY_VISUAL_FILE] = rng.random(
            (n_noisy, ave.N_SEGMENTS, *ave.VISUAL_MAP_SHAPE)).astype(feature_dtype)
    return arrays


def write_h5(path: Path, array: np.ndarray, key: str) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=array)


def _first_train_row(a):
    return int(a[ave.ORDER_FILES["train"]][0])


def _edit(fn):
    """A malformation that edits the arrays dict (fn gets it)."""
    def apply(arrays, keys):
        fn(arrays)
    return apply


def _replace(name, fn):
    """A malformation that replaces arrays[name] by fn(arrays[name])."""
    def apply(arrays, keys):
        arrays[name] = fn(arrays[name])
    return apply


def _nan_audio(a):
    a[ave.AUDIO_FILE][_first_train_row(a), 3, 5] = np.nan


def _inf_visual(a):
    a[ave.VISUAL_FILE][_first_train_row(a), 4, 0, 0, 7] = np.inf


def _zero_label(a):
    a[ave.LABELS_FILE][_first_train_row(a), 2] = 0


def _half_label(a):
    a[ave.LABELS_FILE][_first_train_row(a), 0, 3] = 0.5


def _mil_two(a):
    a[ave.MIL_LABELS_FILE][_first_train_row(a), 1] = 2


def _noisy_event(a):
    a[ave.NOISY_LABELS_FILE][1] = np.eye(ave.N_CLASSES)[3]


def _missing_key(arrays, keys):
    keys[ave.MIL_LABELS_FILE] = "labels"


def _not_hdf5(arrays, keys):
    arrays[ave.LABELS_FILE] = b"this is not HDF5\n"


# name -> function(arrays, keys) editing a consistent set before it is written. A value of None
# in arrays means "do not write this file"; bytes are written as a raw file.
MALFORMATIONS = {
    "missing_file": _edit(lambda a: a.__setitem__(ave.LABELS_FILE, None)),
    "missing_key": _missing_key,
    "not_hdf5": _not_hdf5,
    "wrong_rank": _replace(ave.AUDIO_FILE, lambda x: x.reshape(x.shape[0], -1)),
    "wrong_shape": _replace(ave.LABELS_FILE, lambda x: x[..., :28]),
    "wrong_visual_shape": _replace(ave.VISUAL_FILE, lambda x: x[..., :256]),
    "int_features": _replace(ave.AUDIO_FILE, lambda x: (x * 100).astype(np.int32)),
    "float_order": _replace(ave.ORDER_FILES["train"], lambda x: x.astype(np.float64)),
    "count_mismatch": _replace(ave.MIL_LABELS_FILE, lambda x: x[:-1]),
    "nan_audio": _edit(_nan_audio),
    "inf_visual": _edit(_inf_visual),
    "order_out_of_range": _replace(ave.ORDER_FILES["test"], lambda x: np.append(x, N_VIDEOS + 3)),
    "negative_order": _replace(ave.ORDER_FILES["val"], lambda x: np.append(x, -1)),
    "duplicate_order": _replace(ave.ORDER_FILES["train"], lambda x: np.append(x, x[0])),
    "overlap": _edit(lambda a: a.__setitem__(
        ave.ORDER_FILES["test"], np.append(a[ave.ORDER_FILES["test"]], a[ave.ORDER_FILES["train"]][1]))),
    "empty_split": _replace(ave.ORDER_FILES["val"], lambda x: x[:0]),
    "label_all_zero": _edit(_zero_label),
    "label_not_binary": _edit(_half_label),
    "mil_not_binary": _edit(_mil_two),
    "noisy_not_background": _edit(_noisy_event),
    "noisy_count_mismatch": _replace(ave.NOISY_AUDIO_FILE, lambda x: x[:-1]),
    "noisy_incomplete": _edit(lambda a: a.__setitem__(ave.NOISY_VISUAL_FILE, None)),
    "annotations_short": _replace("annotations", lambda lines: lines[:-1]),
    "annotations_bad_line": _replace("annotations", lambda lines: ["Bark&x&good&3"] + lines[1:]),
    "annotations_unknown_class": _replace("annotations", lambda lines: ["Kazoo&x&good&0&3"] + lines[1:]),
}


def write_ave_dir(folder: Path, arrays: dict | None = None, malformation: str | None = None,
                  keys: dict[str, str] | None = None, **array_options) -> Path:
    """Write an AVE-format folder (created if needed) and return it. `arrays` defaults to
    ave_arrays(**array_options); `malformation` names an entry of MALFORMATIONS applied first;
    `keys` overrides the dataset key of a file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {k: (v.copy() if isinstance(v, (np.ndarray, list)) else v)
              for k, v in (arrays or ave_arrays(**array_options)).items()}
    keys = dict(keys or {})
    if malformation is not None:
        MALFORMATIONS[malformation](arrays, keys)
    for name, value in arrays.items():
        if value is None:
            continue
        if name == "annotations":
            (folder / ave.ANNOTATIONS_FILE).write_text("\n".join(value) + "\n")
        elif isinstance(value, bytes):
            (folder / name).write_bytes(value)
        else:
            default = ave.ORDER_KEY if name in ave.ORDER_FILES.values() else ave.FEATURE_KEY
            write_h5(folder / name, value, keys.get(name, default))
    return folder
