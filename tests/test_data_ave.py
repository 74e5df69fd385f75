"""Validation of AVE-format files and folders (avel_dgl.data.ave, avel_dgl.data.dataset), the
loaders, and `avel-dgl check-data`."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from ave_files import MALFORMATIONS, N_VIDEOS, ave_arrays, write_ave_dir
from click.testing import CliRunner

from avel_dgl.data import ave, cache, dataset
from avel_dgl.data.ave import MultiLabelWarning
from avel_dgl.data.dataset import load_noisy, load_split, validate_dir
from avel_dgl.errors import AvelError
from cli.main import main


@pytest.fixture(autouse=True)
def _cache_next_to_data(monkeypatch):
    monkeypatch.delenv("AVEL_CACHE_DIR", raising=False)


ARRAYS = ave_arrays()
TRAIN = ARRAYS[ave.ORDER_FILES["train"]]
R0, R1 = int(TRAIN[0]), int(TRAIN[1])  # the malformations edit these train rows

# malformation -> (substrings the one-line error must contain, loader that must fail the same way)
CASES = {
    "missing_file": (["labels.h5", "file not found", "key 'avadataset'", "(N, 10, 29)"], "train"),
    "missing_key": (["mil_labels.h5", "expected key 'avadataset'", "found keys ['labels']"], "train"),
    "not_hdf5": (["labels.h5", "expected an HDF5 file with key 'avadataset'", "found an unreadable file"], "train"),
    "wrong_rank": (["audio_feature.h5", "key 'avadataset'", "expected shape (N, 10, 128)", "found (6, 1280)"], "train"),
    "wrong_shape": (["labels.h5", "key 'avadataset'", "expected shape (N, 10, 29)", "found (6, 10, 28)"], "train"),
    "wrong_visual_shape": (["visual_feature.h5", "key 'avadataset'", "expected shape (N, 10, 7, 7, 512)",
                            "found (6, 10, 7, 7, 256)"], "train"),
    "int_features": (["audio_feature.h5", "key 'avadataset'", "expected dtype float32 or float64", "found int32"],
                     "train"),
    "float_order": (["train_order.h5", "key 'order'", "expected an integer dtype", "found float64"], "train"),
    "count_mismatch": (["mil_labels.h5", "key 'avadataset'", "expected 6 rows (as in audio_feature.h5)", "found 5"],
                       "train"),
    "nan_audio": (["audio_feature.h5", "key 'avadataset'", "expected finite values",
                   f"found NaN at row {R0}, segment 3"], "train"),
    "inf_visual": (["visual_feature.h5", "key 'avadataset'", "expected finite values",
                    f"found Inf at row {R0}, segment 4"], "train"),
    "order_out_of_range": (["test_order.h5", "key 'order'", f"expected row indices in [0, {N_VIDEOS})",
                            f"found {N_VIDEOS + 3} at position 1"], "train"),
    "negative_order": (["val_order.h5", "key 'order'", "expected row indices in [0, 6)", "found -1 at position 1"],
                       "train"),
    "duplicate_order": (["train_order.h5", "key 'order'", "expected each row once", f"found row {R0} 2 times"],
                        "train"),
    "overlap": (["test_order.h5", "key 'order'", "expected no rows shared with train_order.h5",
                 f"found 1 (first: row {R1})"], "train"),
    "empty_split": (["val_order.h5", "key 'order'", "expected at least one row index", "found an empty split"],
                    "train"),
    "label_all_zero": (["labels.h5", "key 'avadataset'", "expected one-hot rows",
                        f"found an all-zero row at row {R0}, segment 2"], "train"),
    "label_not_binary": (["labels.h5", "key 'avadataset'", "expected one-hot values 0 or 1",
                          f"found 0.5 at row {R0}, segment 0, class 3"], "train"),
    "mil_not_binary": (["mil_labels.h5", "key 'avadataset'", "expected one-hot values 0 or 1",
                        f"found 2.0 at row {R0}, class 1"], "train"),
    "noisy_not_background": (["labels_noisy.h5", "key 'avadataset'", "expected background (class 28) in every row",
                              "found class 3 at row 1"], "noisy"),
    "noisy_count_mismatch": (["audio_feature_noisy.h5", "key 'avadataset'", "expected 2 rows (as in labels_noisy.h5)",
                              "found 1"], "noisy"),
    "noisy_incomplete": (["visual_feature_noisy.h5", "file not found", "key 'avadataset'"], "noisy"),
    "annotations_short": (["Annotations.txt", f"expected {N_VIDEOS} lines", f"found {N_VIDEOS - 1}"], None),
    "annotations_bad_line": (["Annotations.txt", "line 1", "expected 5 '&'-separated fields", "found 4"], None),
    "annotations_unknown_class": (["Annotations.txt", "line 1", "expected one of the 28 AVE class names",
                                   "found 'Kazoo'"], None),
}


def test_every_malformation_has_a_case():
    assert set(CASES) == set(MALFORMATIONS)


def _assert_message(error: Exception, expected: list[str]) -> None:
    message = str(error)
    assert "\n" not in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


@pytest.mark.parametrize("malformation", sorted(CASES))
def test_validate_dir_rejects(tmp_path, malformation):
    folder = write_ave_dir(tmp_path / "data", malformation=malformation)
    with pytest.raises(AvelError) as error:
        validate_dir(folder, scan_visual=True)
    _assert_message(error.value, CASES[malformation][0])


@pytest.mark.parametrize("malformation", sorted(m for m, (_, loader) in CASES.items() if loader))
def test_loaders_reject_with_the_same_message(tmp_path, malformation):
    folder = write_ave_dir(tmp_path / "data", malformation=malformation)
    expected, loader = CASES[malformation]
    with pytest.raises(AvelError) as error:
        load_split(folder, "train") if loader == "train" else load_noisy(folder)
    _assert_message(error.value, expected)


@pytest.mark.parametrize("malformation", sorted(CASES))
def test_check_data_prints_one_error_line(tmp_path, malformation):
    folder = write_ave_dir(tmp_path / "data", malformation=malformation)
    result = CliRunner().invoke(main, ["check-data", str(folder)])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("avel-dgl: error: ")
    _assert_message(lines[0], CASES[malformation][0])


def test_check_data_summary_on_good_data(tmp_path):
    folder = write_ave_dir(tmp_path / "data")
    result = CliRunner().invoke(main, ["check-data", str(folder)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    index = ARRAYS[ave.LABELS_FILE].argmax(-1)
    events = index != ave.BACKGROUND
    sizes = [len(ARRAYS[ave.ORDER_FILES[s]]) for s in ave.SPLITS]
    assert f"videos per split: train {sizes[0]}, val {sizes[1]}, test {sizes[2]}" in out
    assert f"labels.h5: {len(np.unique(index[events]))} of 28 event classes present" in out
    assert f"background share of segments {100 * (1 - events.mean()):.1f}%" in out
    lengths = np.bincount(events.sum(1), minlength=11)
    for length, count in enumerate(lengths):
        assert re.search(rf"^\s+{length} \| #* +{count}$", out, re.M), f"histogram row {length}"
    for name in ave.SPECS:
        shape = re.escape(str(ARRAYS[name].shape))
        dtype = ARRAYS[name].dtype
        assert re.search(rf"^  {re.escape(name)}\s+key '\w+'\s+{shape}\s+{dtype}\s+[\d.]+ (B|[KMG]iB)$", out, re.M), name
    assert "WSEL extras" in out and "present, valid (2 videos)" in out
    assert "visual_feature.h5 values: scanned, cache built" in out
    assert out.rstrip().endswith("ok")
    assert result.stderr == ""


def test_check_data_reuses_the_cache_on_a_second_run(tmp_path):
    folder = write_ave_dir(tmp_path / "data")
    runner = CliRunner()
    runner.invoke(main, ["check-data", str(folder)])
    result = runner.invoke(main, ["check-data", str(folder)])
    assert result.exit_code == 0
    assert "visual_feature.h5 values: cache reused" in result.stdout


def test_check_data_reports_absent_extras_and_can_require_them(tmp_path):
    arrays = ave_arrays(n_noisy=0)
    del arrays["annotations"], arrays[ave.RIGHT_LABELS_FILE]
    folder = write_ave_dir(tmp_path / "data", arrays=arrays)
    result = CliRunner().invoke(main, ["check-data", str(folder)])
    assert result.exit_code == 0, result.output
    assert "absent (WSEL training unavailable)" in result.stdout
    assert "c-ave labels (right_labels.h5): absent" in result.stdout
    assert "Annotations.txt: absent" in result.stdout
    for option, missing in [("--require-noisy", "labels_noisy.h5"), ("--require-c-ave", "right_labels.h5")]:
        result = CliRunner().invoke(main, ["check-data", str(folder), option])
        assert result.exit_code == 2
        assert len(result.stderr.splitlines()) == 1
        assert missing in result.stderr and "file not found" in result.stderr


def test_check_data_skip_visual_scan_reads_headers_only(tmp_path):
    folder = write_ave_dir(tmp_path / "data", malformation="inf_visual")
    result = CliRunner().invoke(main, ["check-data", str(folder), "--skip-visual-scan"])
    assert result.exit_code == 0, result.output
    assert "visual_feature.h5 values: header only" in result.stdout
    assert not (folder / ".avel_cache").exists()


def test_check_data_missing_folder(tmp_path):
    result = CliRunner().invoke(main, ["check-data", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"avel-dgl: error: {tmp_path / 'nowhere'}: expected a data folder, "
                                          f"found no such directory"]


# --- Several classes in one label row: a warning, never an error, lowest index wins -----------------

def _two_class_arrays():
    arrays = ave_arrays()
    row = int(arrays[ave.ORDER_FILES["test"]][0])
    segment = 5
    original = int(arrays[ave.LABELS_FILE][row, segment].argmax())
    extra = 0 if original != 0 else 1
    arrays[ave.LABELS_FILE][row, segment, extra] = 1
    return arrays, row, segment, min(original, extra)


def test_multi_label_rows_warn_and_resolve_to_the_lowest_index(tmp_path):
    arrays, row, segment, lowest = _two_class_arrays()
    folder = write_ave_dir(tmp_path / "data", arrays=arrays)
    with pytest.warns(MultiLabelWarning, match=rf"labels\.h5: key 'avadataset': 1 row\(s\) .*\(rows {row}\)"):
        report = validate_dir(folder)
    assert report.labels[0].multi_label_rows == [row]
    with pytest.warns(MultiLabelWarning, match=rf"\(rows {row}\)"):
        test = load_split(folder, "test")
    position = int(np.flatnonzero(test.rows.numpy() == row)[0])
    assert int(test.segment_labels[position, segment]) == lowest
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # c-ave labels are clean: no warning
        load_split(folder, "test", "c-ave")


def test_check_data_shows_multi_label_warning_and_succeeds(tmp_path):
    arrays, row, _, _ = _two_class_arrays()
    folder = write_ave_dir(tmp_path / "data", arrays=arrays)
    result = CliRunner().invoke(main, ["check-data", str(folder)])
    assert result.exit_code == 0, result.output
    assert f"rows with more than one class (lowest class index used): {row}" in result.stdout
    assert "avel-dgl: warning: " in result.stderr and f"(rows {row})" in result.stderr


def test_onehot_to_index_rule_and_row_mapping():
    onehot = np.zeros((3, 29))
    onehot[0, 7] = 1
    onehot[1, [4, 20]] = 1
    onehot[2, 28] = 1
    with pytest.warns(MultiLabelWarning, match=r"\(rows 41\)"):
        index = ave.onehot_to_index(onehot, "x.h5", rows=np.array([40, 41, 42]))
    assert index.tolist() == [7, 4, 28]


# --- Loaders on good data -------------------------------------------------------------------------

def test_load_split_values(tmp_path):
    folder = write_ave_dir(tmp_path / "data")
    for split in ave.SPLITS:
        data = load_split(folder, split)
        rows = ARRAYS[ave.ORDER_FILES[split]]
        assert data.rows.tolist() == rows.tolist()
        assert data.audio.dtype == data.visual.dtype == torch.float32
        assert data.segment_labels.dtype == data.video_labels.dtype == data.rows.dtype == torch.int64
        assert tuple(data.visual.shape) == (len(rows), 10, 512)
        np.testing.assert_allclose(data.audio.numpy(), ARRAYS[ave.AUDIO_FILE][rows])
        np.testing.assert_allclose(data.visual.numpy(), ARRAYS[ave.VISUAL_FILE][rows].mean(axis=(2, 3)),
                                   rtol=1e-6)
        assert data.segment_labels.tolist() == ARRAYS[ave.LABELS_FILE][rows].argmax(-1).tolist()
        assert data.video_labels.tolist() == ARRAYS[ave.MIL_LABELS_FILE][rows].argmax(-1).tolist()


def test_c_ave_reads_right_labels(tmp_path):
    arrays = ave_arrays()
    row = int(arrays[ave.ORDER_FILES["test"]][0])
    arrays[ave.RIGHT_LABELS_FILE][row, 9] = np.eye(29)[11]
    folder = write_ave_dir(tmp_path / "data", arrays=arrays)
    assert int(load_split(folder, "test", "c-ave").segment_labels[0, 9]) == 11
    assert int(load_split(folder, "test", "o-ave").segment_labels[0, 9]) == arrays[ave.LABELS_FILE][row, 9].argmax()


def test_load_noisy(tmp_path):
    folder = write_ave_dir(tmp_path / "data")
    noisy = load_noisy(folder)
    assert len(noisy) == 2
    assert (noisy.segment_labels == ave.BACKGROUND).all() and (noisy.video_labels == ave.BACKGROUND).all()
    np.testing.assert_allclose(noisy.audio.numpy(), ARRAYS[ave.NOISY_AUDIO_FILE])


@pytest.mark.parametrize("args, expected", [
    (("train", "x-ave"), "label set: expected one of o-ave, c-ave, found 'x-ave'"),
    (("dev", "o-ave"), "split: expected one of train, val, test, found 'dev'"),
])
def test_load_split_bad_options(tmp_path, args, expected):
    folder = write_ave_dir(tmp_path / "data")
    with pytest.raises(AvelError, match=re.escape(expected)):
        load_split(folder, *args)


def test_float64_features_accepted(tmp_path):
    folder = write_ave_dir(tmp_path / "data", feature_dtype=np.float64)
    report = validate_dir(folder, scan_visual=True)
    assert {info.dtype for info in report.files if info.file.startswith(("audio", "visual"))} == {"float64"}
    assert load_split(folder, "train").audio.dtype.is_floating_point


# --- Annotations.txt ------------------------------------------------------------------------------

def test_read_annotations_keeps_row_order_and_repeats(tmp_path):
    path = tmp_path / "Annotations.txt"
    path.write_text("Bark&abc&good&2&5\r\nCat&abc&good&0&0\r\nBark&zzz&bad&0&10\r\n\r\n")
    frame = ave.read_annotations(path)
    assert list(frame.columns) == ["category", "video_id", "quality", "start", "end"]
    assert frame["video_id"].tolist() == ["abc", "abc", "zzz"]
    assert frame["category"].tolist() == ["Bark", "Cat", "Bark"]
    assert frame["start"].tolist() == [2, 0, 0] and frame["end"].tolist() == [5, 0, 10]
    assert str(frame["start"].dtype) == "int64"
    mask = ave.annotation_event_mask(frame)
    assert mask.sum(1).tolist() == [3, 0, 10] and mask[0].tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 0, 0]
    assert ave.annotation_class_index(frame).tolist() == [2, 22, 2]


@pytest.mark.parametrize("line, expected", [
    ("Bark&a&good&x&5", "line 2: expected integer StartTime and EndTime, found 'x' and '5'"),
    ("Bark&a&good&6&5", "line 2: expected 0 <= StartTime <= EndTime <= 10, found 6&5"),
    ("Bark&a&good&0&11", "line 2: expected 0 <= StartTime <= EndTime <= 10, found 0&11"),
    ("Bark&a&b&good&0&1", "line 2: expected 5 '&'-separated fields"),
])
def test_read_annotations_rejects(tmp_path, line, expected):
    path = tmp_path / "Annotations.txt"
    path.write_text(f"Bark&ok&good&0&1\n{line}\n")
    with pytest.raises(AvelError, match=re.escape(expected)) as error:
        ave.read_annotations(path)
    assert "Annotations.txt" in str(error.value)


def _data_imports(module) -> set[str]:
    """The avel_dgl.data modules `module` imports anywhere in its file, function bodies included."""
    found = set()
    for node in ast.walk(ast.parse(Path(module.__file__).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] if node.module != "avel_dgl.data" else [f"avel_dgl.data.{a.name}" for a in node.names]
        else:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        found |= {name for name in names if name.startswith("avel_dgl.data.")}
    return found


def test_the_data_modules_import_one_way():
    # ave.py reads single files, cache.py pools through it, dataset.py loads folders with both: no
    # cycle, and no import inside a function hiding one.
    assert _data_imports(ave) == set()
    assert _data_imports(cache) == {"avel_dgl.data.ave"}
    assert _data_imports(dataset) == {"avel_dgl.data.ave", "avel_dgl.data.cache"}


def test_the_file_readers_and_the_cache_load_without_torch():
    code = ("import sys, avel_dgl.data.cache; "
            "print(sorted(m for m in ('torch', 'avel_dgl.data.dataset') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "[]\n"
