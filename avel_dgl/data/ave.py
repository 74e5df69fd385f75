"""The AVE dataset layout: file names, keys, shapes, class names, and reading splits into tensors.

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

Features may be float32 or float64 on disk; everything returned here is float32 (features) or
int64 (labels and indices). Class index 28 is background.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from avel_dgl.errors import AvelError

N_SEGMENTS = 10
N_EVENTS = 28
N_CLASSES = N_EVENTS + 1  # 28 events + background
BACKGROUND = N_EVENTS  # index 28
AUDIO_DIM = 128
VISUAL_MAP_SHAPE = (7, 7, 512)
VISUAL_DIM = VISUAL_MAP_SHAPE[-1]

FEATURE_KEY = "avadataset"
ORDER_KEY = "order"

AUDIO_FILE = "audio_feature.h5"
VISUAL_FILE = "visual_feature.h5"
LABELS_FILE = "labels.h5"
RIGHT_LABELS_FILE = "right_labels.h5"
MIL_LABELS_FILE = "mil_labels.h5"
NOISY_LABELS_FILE = "labels_noisy.h5"
NOISY_AUDIO_FILE = "audio_feature_noisy.h5"
NOISY_VISUAL_FILE = "visual_feature_noisy.h5"
ANNOTATIONS_FILE = "Annotations.txt"
SPLITS = ("train", "val", "test")
ORDER_FILES = {split: f"{split}_order.h5" for split in SPLITS}

# Which segment-label file each test label set reads. Training and validation always use labels.h5.
LABEL_SETS = {"o-ave": LABELS_FILE, "c-ave": RIGHT_LABELS_FILE}

# The 28 AVE categories in index order (the public release's ordering), then background.
CLASS_NAMES = (
    "Church bell", "Male speech, man speaking", "Bark", "Fixed-wing aircraft, airplane",
    "Race car, auto racing", "Female speech, woman speaking", "Helicopter", "Violin, fiddle",
    "Flute", "Ukulele", "Frying (food)", "Truck", "Shofar", "Motorcycle", "Acoustic guitar",
    "Train horn", "Clock", "Banjo", "Goat", "Baby cry, infant cry", "Bus", "Chainsaw", "Cat",
    "Horse", "Toilet flush", "Rodents, rats, mice", "Accordion", "Mandolin", "background",
)
assert len(CLASS_NAMES) == N_CLASSES


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


def read_array(path: Path, key: str) -> np.ndarray:
    """Read one whole HDF5 dataset, with a one-line error naming the file and key."""
    path = Path(path)
    if not path.is_file():
        raise AvelError(f"{path}: file not found")
    try:
        with h5py.File(path, "r") as f:
            if key not in f:
                raise AvelError(f"{path}: key '{key}' not found (found keys: {sorted(f.keys())})")
            return f[key][()]
    except OSError as e:
        raise AvelError(f"{path}: not a readable HDF5 file ({e})") from None


def onehot_to_index(onehot: np.ndarray, source: str) -> np.ndarray:
    """Class index per row of a one-hot array (..., 29). A row with several classes set resolves
    to the lowest such index; a row with none set is an error. (Validation reports both cases.)"""
    if onehot.shape[-1] != N_CLASSES:
        raise AvelError(f"{source}: expected last dimension {N_CLASSES}, found {onehot.shape[-1]}")
    nonzero = onehot > 0.5
    empty = ~nonzero.any(-1)
    if empty.any():
        first = np.argwhere(empty)[0].tolist()
        raise AvelError(f"{source}: expected one-hot rows, found an all-zero row at index {first}")
    return nonzero.argmax(-1).astype(np.int64)


def read_order(data_dir: Path, split: str) -> np.ndarray:
    if split not in SPLITS:
        raise AvelError(f"split: expected one of {', '.join(SPLITS)}, found '{split}'")
    return read_array(Path(data_dir) / ORDER_FILES[split], ORDER_KEY).astype(np.int64)


def load_split(data_dir: str | Path, split: str, label_set: str = "o-ave") -> SplitData:
    """Load one split as float32/int64 tensors, visual features pooled through the cache.

    label_set chooses the segment labels: 'o-ave' reads labels.h5, 'c-ave' right_labels.h5.
    """
    from avel_dgl.data.cache import pooled_visual

    data_dir = Path(data_dir)
    if label_set not in LABEL_SETS:
        raise AvelError(f"label set: expected one of {', '.join(LABEL_SETS)}, found '{label_set}'")
    rows = read_order(data_dir, split)
    audio = read_array(data_dir / AUDIO_FILE, FEATURE_KEY)[rows]
    visual = pooled_visual(data_dir, VISUAL_FILE)[rows]
    labels_file = data_dir / LABEL_SETS[label_set]
    segment = onehot_to_index(read_array(labels_file, FEATURE_KEY)[rows], str(labels_file))
    mil_file = data_dir / MIL_LABELS_FILE
    video = onehot_to_index(read_array(mil_file, FEATURE_KEY)[rows], str(mil_file))
    return SplitData(
        audio=torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
        visual=torch.from_numpy(np.ascontiguousarray(visual, dtype=np.float32)),
        segment_labels=torch.from_numpy(segment),
        video_labels=torch.from_numpy(video),
        rows=torch.from_numpy(rows),
    )


def load_noisy(data_dir: str | Path) -> SplitData:
    """The background-only videos used as extra negatives for weakly supervised training."""
    from avel_dgl.data.cache import pooled_visual

    data_dir = Path(data_dir)
    labels_file = data_dir / NOISY_LABELS_FILE
    video = onehot_to_index(read_array(labels_file, FEATURE_KEY), str(labels_file))
    audio = read_array(data_dir / NOISY_AUDIO_FILE, FEATURE_KEY)
    visual = pooled_visual(data_dir, NOISY_VISUAL_FILE)
    n = audio.shape[0]
    return SplitData(
        audio=torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
        visual=torch.from_numpy(np.ascontiguousarray(visual, dtype=np.float32)),
        segment_labels=torch.from_numpy(np.repeat(video[:, None], N_SEGMENTS, axis=1)),
        video_labels=torch.from_numpy(video),
        rows=torch.arange(n, dtype=torch.int64),
    )
