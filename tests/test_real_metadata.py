"""The real AVE metadata in ../shared/ave (read-only, never copied), read through the project's
readers and checks: keys, dtypes, row counts, splits, Annotations.txt, class names."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from avel_dgl.data import ave

META = Path(os.environ.get("AVE_METADATA_DIR")
            or Path(__file__).resolve().parents[1].parent / "shared" / "ave")
pytestmark = pytest.mark.skipif(not META.is_dir(), reason=f"real AVE metadata not found at {META} "
                                "(set AVE_METADATA_DIR to the folder holding Annotations.txt etc.)")

N = 4143
N_NOISY = 178


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _read(name, key=ave.FEATURE_KEY):
    return ave.read_array(META / name, key)


@pytest.mark.parametrize("name, shape, dtype", [
    (ave.MIL_LABELS_FILE, (N, 29), "float32"),
    (ave.NOISY_LABELS_FILE, (N_NOISY, 29), "float32"),
    (ave.NOISY_AUDIO_FILE, (N_NOISY, 10, 128), "float64"),
    (ave.ORDER_FILES["train"], (3339,), "int64"),
    (ave.ORDER_FILES["val"], (402,), "int64"),
    (ave.ORDER_FILES["test"], (402,), "int64"),
])
def test_layout_files_pass_the_header_checks(name, shape, dtype):
    info = ave.inspect_array(META / name)
    assert (info.key, info.shape, info.dtype) == (ave.SPECS[name].key, shape, dtype)


def test_labels_closs_key_and_dtype():
    closs = _read("labels_closs.h5")
    assert closs.shape == (N, 10) and closs.dtype == np.float32
    assert set(np.unique(closs)) <= {0.0, 1.0}


def test_splits_have_the_release_sizes_and_are_disjoint():
    orders = ave.check_orders(META, N)  # raises on range, repeats, overlap, empty
    assert {s: len(o) for s, o in orders.items()} == {"train": 3339, "val": 402, "test": 402}
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        assert np.intersect1d(orders[a], orders[b]).size == 0
    assert np.array_equal(np.sort(np.concatenate(list(orders.values()))), np.arange(N))


def test_annotations_rebuild_labels_closs():
    frame = ave.read_annotations(META / ave.ANNOTATIONS_FILE)
    assert len(frame) == N and list(frame.columns) == list(ave.ANNOTATION_COLUMNS)
    mask = ave.annotation_event_mask(frame)
    np.testing.assert_array_equal(mask, _read("labels_closs.h5") == 1)
    assert (frame.loc[26, "start"], frame.loc[26, "end"]) == (0, 0)  # the known empty span
    assert not mask[26].any()
    assert frame["video_id"].duplicated().any()  # VideoIDs repeat: rows, not IDs, are the key


def test_annotation_classes_match_mil_labels(no_warnings):
    frame = ave.read_annotations(META / ave.ANNOTATIONS_FILE)
    mil = _read(ave.MIL_LABELS_FILE)
    video = ave.onehot_to_index(mil, str(META / ave.MIL_LABELS_FILE))  # strict one-hot, no warning
    np.testing.assert_array_equal(ave.annotation_class_index(frame), video)
    assert not (video == ave.BACKGROUND).any() and not mil[:, ave.BACKGROUND].any()
    assert len(np.unique(video)) == ave.N_EVENTS


def test_class_names_file_matches_class_names():
    lines = (META / "ave_classes.txt").read_text().splitlines()
    parsed = [line.split("\t", 1) for line in lines if line.strip()]
    assert [(int(i), name) for i, name in parsed] == list(enumerate(ave.CLASS_NAMES))


def test_noisy_extras_are_background_and_finite(no_warnings):
    labels = ave.read_checked(META / ave.NOISY_LABELS_FILE)
    index = ave.onehot_to_index(labels, str(META / ave.NOISY_LABELS_FILE))
    ave.check_background(index, str(META / ave.NOISY_LABELS_FILE))
    assert (index == ave.BACKGROUND).all()
    audio = ave.read_checked(META / ave.NOISY_AUDIO_FILE)
    ave.check_finite(audio, str(META / ave.NOISY_AUDIO_FILE))
    assert audio.min() >= 0
