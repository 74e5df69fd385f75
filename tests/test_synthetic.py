"""make-synthetic: the AVE layout it writes, the structure of its labels, determinism, the
--annotations mode, and its errors."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from avel_dgl.data import ave, dataset, synthetic
from avel_dgl.data.synthetic import make_synthetic
from avel_dgl.errors import AvelError
from cli.main import main

REAL_AVE = Path(os.environ.get("AVE_METADATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "ave"))
needs_real = pytest.mark.skipif(not (REAL_AVE / ave.ANNOTATIONS_FILE).is_file(),
                                reason=f"real AVE metadata not found at {REAL_AVE} (set AVE_METADATA_DIR)")


def read(folder: Path, name: str, key: str = ave.FEATURE_KEY) -> np.ndarray:
    with h5py.File(folder / name, "r") as f:
        assert list(f.keys()) == [key], f"{name}: keys {list(f.keys())}"
        return f[key][()]


def spans_of(onehot: np.ndarray) -> list[tuple[int, int, int]]:
    """(class, start, end) per video from (N, 10, 29) one-hot labels; class -1 when no event.
    Asserts the video has one event class and one contiguous span."""
    out = []
    for row in onehot.argmax(-1):
        event = np.flatnonzero(row != ave.BACKGROUND)
        if len(event) == 0:
            out.append((-1, 0, 0))
            continue
        assert len(set(row[event])) == 1, f"several classes in {row}"
        assert event[-1] - event[0] + 1 == len(event), f"span not contiguous in {row}"
        out.append((int(row[event[0]]), int(event[0]), int(event[-1]) + 1))
    return out


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """300 videos, float32 maps: enough for share statistics."""
    return make_synthetic(tmp_path_factory.mktemp("syn") / "big", videos=300, seed=3, visual_dtype="float32")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """12 videos with the default (real release) dtypes."""
    return make_synthetic(tmp_path_factory.mktemp("syn") / "small", videos=12, seed=1)


def test_every_file_has_the_real_release_key_shape_and_dtype(small):
    n, m = 12, synthetic.noisy_count(12)
    expected = {
        ave.AUDIO_FILE: ((n, 10, 128), "float64"),
        ave.VISUAL_FILE: ((n, 10, 7, 7, 512), "float64"),
        ave.LABELS_FILE: ((n, 10, 29), "float32"),
        ave.RIGHT_LABELS_FILE: ((n, 10, 29), "float32"),
        ave.MIL_LABELS_FILE: ((n, 29), "float32"),
        ave.NOISY_LABELS_FILE: ((m, 29), "float32"),
        ave.NOISY_AUDIO_FILE: ((m, 10, 128), "float64"),
        ave.NOISY_VISUAL_FILE: ((m, 10, 7, 7, 512), "float64"),
    }
    for name, (shape, dtype) in expected.items():
        array = read(small, name)
        assert (array.shape, str(array.dtype)) == (shape, dtype), name
    for split in ave.SPLITS:
        order = read(small, ave.ORDER_FILES[split], ave.ORDER_KEY)
        assert order.ndim == 1 and order.dtype == np.int64
    lines = (small / ave.ANNOTATIONS_FILE).read_text().splitlines()
    assert len(lines) == n
    assert all(len(line.split("&")) == 5 and line.split("&")[2] == "good" for line in lines)
    assert len({line.split("&")[1] for line in lines}) == n  # unique synthetic VideoIDs


def test_float32_visual_option(big):
    assert read(big, ave.VISUAL_FILE).dtype == np.float32
    assert read(big, ave.NOISY_VISUAL_FILE).dtype == np.float32
    assert read(big, ave.AUDIO_FILE).dtype == np.float64


def test_splits_are_disjoint_covering_and_in_ave_proportions(big):
    orders = {s: read(big, ave.ORDER_FILES[s], ave.ORDER_KEY) for s in ave.SPLITS}
    joined = np.concatenate(list(orders.values()))
    assert sorted(joined.tolist()) == list(range(300))
    assert len(orders["val"]) == len(orders["test"]) == round(300 * 402 / 4143)


def test_full_size_splits_are_exactly_the_real_sizes():
    classes = np.random.default_rng(0).integers(0, 28, 4143)
    orders = synthetic.split_rows(np.random.default_rng(1), classes)
    assert {s: len(o) for s, o in orders.items()} == {"train": 3339, "val": 402, "test": 402}
    # stratified: every class with at least 11 videos appears in test
    counts = np.bincount(classes, minlength=28)
    assert set(classes[orders["test"]]) >= set(np.flatnonzero(counts >= 11))


def test_one_class_per_video_contiguous_spans_of_at_least_two_seconds(big):
    right = read(big, ave.RIGHT_LABELS_FILE)
    assert ((right == 0) | (right == 1)).all() and (right.sum(-1) == 1).all()
    mil = read(big, ave.MIL_LABELS_FILE)
    for (cls, start, end), video_class in zip(spans_of(right), mil.argmax(-1)):
        assert cls == video_class
        assert end - start >= 2


def test_background_and_fully_covered_shares_are_like_ave(big):
    segments = read(big, ave.RIGHT_LABELS_FILE).argmax(-1)
    background = (segments == ave.BACKGROUND).mean()
    full = (segments != ave.BACKGROUND).all(1).mean()
    assert 0.12 <= background <= 0.22, background  # AVE: 0.171
    assert 0.58 <= full <= 0.74, full  # AVE: 0.664


def test_annotations_txt_describes_the_corrected_labels(big):
    right = spans_of(read(big, ave.RIGHT_LABELS_FILE))
    lines = (big / ave.ANNOTATIONS_FILE).read_text().splitlines()
    rebuilt = [(ave.CLASS_NAMES.index(c), int(s), int(e)) for c, _, _, s, e in (l.split("&") for l in lines)]
    assert rebuilt == right


def test_original_labels_differ_only_on_a_few_test_rows_by_one_boundary(big):
    labels, right = read(big, ave.LABELS_FILE), read(big, ave.RIGHT_LABELS_FILE)
    test_rows = set(read(big, ave.ORDER_FILES["test"], ave.ORDER_KEY).tolist())
    differ = np.flatnonzero((labels != right).any((1, 2)))
    assert 1 <= len(differ) <= max(1, len(test_rows) // 10)
    assert set(differ.tolist()) <= test_rows
    for row, ((c0, s0, e0), (c1, s1, e1)) in enumerate(zip(spans_of(labels), spans_of(right))):
        assert c0 == c1
        moved = abs(s0 - s1) + abs(e0 - e1)
        assert moved == (1 if row in differ else 0), (row, (s0, e0), (s1, e1))
        assert e0 - s0 >= 2


def test_mil_labels_match_segment_labels_and_noisy_set_is_background(big):
    mil, right = read(big, ave.MIL_LABELS_FILE), read(big, ave.RIGHT_LABELS_FILE)
    assert (mil.sum(1) == 1).all() and (mil[:, ave.BACKGROUND] == 0).all()
    event_class = np.where(right[..., :ave.BACKGROUND].any(1))  # (row, class) pairs seen in segments
    assert (mil[event_class] == 1).all()
    noisy = read(big, ave.NOISY_LABELS_FILE)
    assert len(noisy) == synthetic.noisy_count(300) and (noisy.argmax(1) == ave.BACKGROUND).all()
    assert (noisy.sum(1) == 1).all()


def test_features_are_nonnegative_sparse_and_at_vggish_scale(big):
    audio = read(big, ave.AUDIO_FILE)
    # Real VGGish features (audio_feature_noisy.h5): min 0, mean 0.12, 65% exact zeros.
    assert audio.min() >= 0 and 0.06 <= audio.mean() <= 0.2 and 0.5 <= (audio == 0).mean() <= 0.8
    with h5py.File(big / ave.VISUAL_FILE) as f:
        maps = f[ave.FEATURE_KEY][:20]
    assert maps.min() >= 0 and (maps == 0).mean() >= 0.5


def test_the_object_signal_sits_in_a_block_of_a_few_cells():
    world = synthetic.make_world(0)
    # Same random stream: the two videos differ only in where the class is seen (event 0-10 vs none).
    _, with_event = synthetic.video_features(world, synthetic._rng(0, 9, 9), 5, (0, 10))
    _, without = synthetic.video_features(world, synthetic._rng(0, 9, 9), 5, (0, 0))
    changed = np.abs(with_event - without).sum(axis=(0, 3)) > 0  # (7, 7) cells touched
    rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
    assert 4 <= changed.sum() <= 9
    assert changed.sum() == len(rows) * len(cols)  # a filled rectangle


def test_same_seed_gives_identical_arrays_whatever_the_chunking(tmp_path):
    a = make_synthetic(tmp_path / "a", videos=8, seed=5, visual_dtype="float32")
    b = make_synthetic(tmp_path / "b", videos=8, seed=5, visual_dtype="float32", chunk_videos=3)
    c = make_synthetic(tmp_path / "c", videos=8, seed=6, visual_dtype="float32")
    names = sorted(p.name for p in a.glob("*.h5"))
    assert len(names) == 11
    for name in names:
        key = ave.ORDER_KEY if "order" in name else ave.FEATURE_KEY
        assert read(a, name, key).tobytes() == read(b, name, key).tobytes(), name
    assert (a / ave.ANNOTATIONS_FILE).read_text() == (b / ave.ANNOTATIONS_FILE).read_text()
    assert not np.array_equal(read(a, ave.AUDIO_FILE), read(c, ave.AUDIO_FILE))
    assert not np.array_equal(read(a, ave.RIGHT_LABELS_FILE), read(c, ave.RIGHT_LABELS_FILE))


@pytest.mark.parametrize("split", ave.SPLITS)
@pytest.mark.parametrize("label_set", list(ave.LABEL_SETS))
def test_load_split_reads_every_split_and_label_set(big, split, label_set):
    data = dataset.load_split(big, split, label_set)
    rows = read(big, ave.ORDER_FILES[split], ave.ORDER_KEY)
    labels = read(big, ave.LABEL_SETS[label_set])[rows].argmax(-1)
    assert data.rows.tolist() == rows.tolist()
    assert data.audio.shape == (len(rows), 10, 128) and data.visual.shape == (len(rows), 10, 512)
    assert (data.segment_labels.numpy() == labels).all()


def test_load_noisy_reads_the_noisy_set(big):
    noisy = dataset.load_noisy(big)
    assert len(noisy) == synthetic.noisy_count(300) and (noisy.segment_labels == ave.BACKGROUND).all()


def test_span_sampler_matches_the_real_annotations_distribution():
    spans = synthetic.sample_spans(np.random.default_rng(0), 20000)
    length = spans[:, 1] - spans[:, 0]
    assert length.min() >= 2 and spans.min() >= 0 and spans.max() <= 10
    assert abs((length == 10).mean() - 0.664) < 0.02
    assert abs(1 - length.mean() / 10 - 0.171) < 0.015


@needs_real
def test_span_sampler_agrees_with_the_real_file():
    real = synthetic.annotated_videos(REAL_AVE / ave.ANNOTATIONS_FILE)[1]
    ours = synthetic.sample_spans(np.random.default_rng(0), 20000)

    def summary(spans):
        length = spans[:, 1] - spans[:, 0]
        partial = (length > 0) & (length < 10)
        return np.array([(length == 10).mean(), 1 - length.mean() / 10,
                         (spans[partial, 0] == 0).mean(), (spans[partial, 1] == 10).mean()])

    # full share, background share, partial spans starting at 0, partial spans ending at 10
    assert np.abs(summary(real) - summary(ours)).max() < 0.03, (summary(real), summary(ours))


@needs_real
def test_annotations_mode_reproduces_real_rows_and_splits(tmp_path):
    source = REAL_AVE / ave.ANNOTATIONS_FILE
    out = make_synthetic(tmp_path / "real50", videos=50, seed=0, annotations=source, visual_dtype="float32")
    lines = source.read_text().splitlines()[:50]
    expected = [(ave.CLASS_NAMES.index(c), int(s), int(e)) for c, _, _, s, e in (l.split("&") for l in lines)]
    right = read(out, ave.RIGHT_LABELS_FILE)
    got = spans_of(right)
    for (cls, start, end), (gcls, gstart, gend), mil in zip(expected, got, read(out, ave.MIL_LABELS_FILE)):
        assert mil.argmax() == cls
        assert (gcls, gstart, gend) == ((cls, start, end) if end > start else (-1, 0, 0))
    assert (out / ave.ANNOTATIONS_FILE).read_text().splitlines() == lines
    labels = read(out, ave.LABELS_FILE)
    for split in ave.SPLITS:
        real = read(REAL_AVE, ave.ORDER_FILES[split], ave.ORDER_KEY)
        ours = read(out, ave.ORDER_FILES[split], ave.ORDER_KEY)
        assert ours.tolist() == real[real < 50].tolist()
        if split != "test":
            assert np.array_equal(labels[ours], right[ours])
    # row 26 of the real file is the empty span 0&0: all background, class still in mil_labels
    assert lines[26].endswith("&0&0") and (right[26].argmax(-1) == ave.BACKGROUND).all()


def test_annotations_mode_handles_quirks_and_makes_splits_without_order_files(tmp_path):
    source = tmp_path / "ann" / "Annotations.txt"
    source.parent.mkdir()
    rows = ["Bark&same-id&good&0&10", "Bark&same-id&good&0&0", "Cat&x1&good&3&5",
            "Goat&x2&bad&7&10", "Clock&x3&good&0&2", "Flute&x4&good&2&9"]
    source.write_bytes(("\r\n".join(rows) + "\r\n\r\n").encode())
    out = make_synthetic(tmp_path / "out", annotations=source, visual_dtype="float32")
    got = spans_of(read(out, ave.RIGHT_LABELS_FILE))
    assert got == [(2, 0, 10), (-1, 0, 0), (22, 3, 5), (18, 7, 10), (16, 0, 2), (8, 2, 9)]
    orders = [read(out, ave.ORDER_FILES[s], ave.ORDER_KEY) for s in ave.SPLITS]
    assert sorted(np.concatenate(orders).tolist()) == list(range(6))
    assert (out / ave.ANNOTATIONS_FILE).read_text().splitlines() == rows


@pytest.mark.parametrize("line, message", [
    ("Bark&id&good&0", "line 2: expected 5 '&'-separated fields"),
    ("Dog&id&good&0&10", "line 2: expected one of the 28 AVE categories, found 'Dog'"),
    ("Bark&id&good&a&10", "line 2: expected integer StartTime and EndTime"),
    ("Bark&id&good&5&11", "line 2: expected 0 <= StartTime <= EndTime <= 10, found 5&11"),
])
def test_malformed_annotation_line_is_one_line_error_and_writes_nothing(tmp_path, line, message):
    source = tmp_path / "Annotations.txt"
    source.write_text(f"Bark&a&good&0&10\n{line}\nBark&b&good&0&10\n")
    with pytest.raises(AvelError, match=message) as err:
        make_synthetic(tmp_path / "out", annotations=source)
    assert "\n" not in str(err.value) and str(source) in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Annotations.txt"]


def test_failure_while_writing_leaves_no_folder(tmp_path, monkeypatch):
    calls = []

    def failing(*args):
        calls.append(1)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real(*args)

    real = synthetic.video_features
    monkeypatch.setattr(synthetic, "video_features", failing)
    with pytest.raises(AvelError, match=r"out: cannot write, the file system of .* is full \(No space left on device\); "
                                        r"nothing was written$"):
        make_synthetic(tmp_path / "out", videos=8, visual_dtype="float32", chunk_videos=2)
    assert list(tmp_path.iterdir()) == []


def test_rerun_needs_overwrite_and_never_deletes_a_file_it_did_not_write(tmp_path):
    out = make_synthetic(tmp_path / "out", videos=4, seed=0, visual_dtype="float32")
    first = read(out, ave.AUDIO_FILE)
    with pytest.raises(AvelError, match="--out: .* already holds a make-synthetic folder; replace it with --overwrite"):
        make_synthetic(out, videos=5, seed=1, visual_dtype="float32")
    assert np.array_equal(read(out, ave.AUDIO_FILE), first)
    (out / ".avel_cache").mkdir()  # a derived cache another command made: --overwrite may drop it
    make_synthetic(out, videos=5, seed=1, visual_dtype="float32", overwrite=True)
    assert read(out, ave.AUDIO_FILE).shape[0] == 5 and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert first.shape[0] == 4
    (out / "my_notes.txt").write_text("keep me")  # a user's file in a synthetic folder
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(AvelError, match="--overwrite: .* holds my_notes.txt, which avel-dgl did not write"):
        make_synthetic(out, videos=4, overwrite=True)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert (out / "my_notes.txt").read_text() == "keep me"
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(AvelError, match="--out: .* is not empty and holds no avel-dgl make-synthetic folder"):
        make_synthetic(foreign, videos=4, overwrite=True)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("kwargs, option", [
    ({"videos": -5}, "--videos"), ({"videos": 2}, "--videos"), ({"seed": -1}, "--seed"),
    ({"visual_dtype": "float16"}, "--visual-dtype"), ({"annotations": "/nonexistent/Annotations.txt"}, "--annotations"),
])
def test_bad_options_are_one_line_errors_naming_the_option(tmp_path, kwargs, option):
    with pytest.raises(AvelError) as err:
        make_synthetic(tmp_path / "out", **kwargs)
    assert str(err.value).startswith(option) and "expected" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_unwritable_out_is_an_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(AvelError, match=r"--out: cannot create .*/out: .*/file is a file"):
        make_synthetic(blocker / "out", videos=4)


def test_cli_writes_a_folder(tmp_path):
    result = CliRunner().invoke(main, ["make-synthetic", "--out", str(tmp_path / "d"), "--videos", "6",
                                       "--seed", "2", "--visual-dtype", "float32"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout and "6 videos" in result.stdout
    assert read(tmp_path / "d", ave.AUDIO_FILE).shape == (6, 10, 128)
    assert dataset.load_split(tmp_path / "d", "train").audio.shape[1:] == (10, 128)


@pytest.mark.parametrize("args, message", [
    (["--videos", "-1"], "--videos: expected an integer of at least 3 (one video per split), found -1"),
    (["--videos", "abc"], "--videos: expected an integer, found 'abc'"),
    (["--visual-dtype", "int8"], "--visual-dtype: expected one of float64, float32, found 'int8'"),
])
def test_cli_bad_option_prints_one_line_and_fails(tmp_path, args, message):
    result = CliRunner().invoke(main, ["make-synthetic", "--out", str(tmp_path / "d"), *args])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"avel-dgl: error: {message}"]
    assert not (tmp_path / "d").exists()
