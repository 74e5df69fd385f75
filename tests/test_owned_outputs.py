"""One owner of avel-dgl's outputs (issue 24): the owned-folder rule every folder-writing command
shares (`outputs.check_owned_folder`), the swap of a new folder into place
(`outputs.writing_folder`), the all-or-none writer, and the helpers that had copies elsewhere.
Small and direct: each command's use of them is covered by tests/test_faults.py."""

from __future__ import annotations

import dataclasses
import os
import signal
import zipfile
from pathlib import Path

import pytest

from avel_dgl import ablate, interrupt, localize, outputs, report, train
from avel_dgl.data import synthetic
from avel_dgl.errors import AvelError, Interrupted
from avel_dgl.outputs import OwnedFolder, check_owned_folder, file_kind, write_all_or_none, writing_folder
from avel_dgl.run_folder import RunFolder
from avel_dgl.video import extract, weights

KIND = OwnedFolder("toy folder", "toy.json", lambda name: name in {"toy.json", "a.txt"},
                   go_on="continue it with --more {path}, ")


def _folder(path: Path, *names: str) -> Path:
    path.mkdir()
    for name in names:
        (path / name).write_text(name)
    return path


def test_owned_folder_a_missing_or_empty_folder_is_free(tmp_path):
    assert check_owned_folder(tmp_path / "new", KIND, overwrite=False) is False
    assert check_owned_folder(_folder(tmp_path / "empty"), KIND, overwrite=False) is False


def test_owned_folder_without_its_marker_is_never_ours(tmp_path):
    mine = _folder(tmp_path / "mine", "a.txt")
    for overwrite in (False, True, None):
        with pytest.raises(AvelError) as err:
            check_owned_folder(mine, KIND, overwrite)
        assert str(err.value) == (f"--out: {mine} is not empty and holds no avel-dgl toy folder (no toy.json); "
                                  "choose a new or empty folder")
    assert (mine / "a.txt").read_text() == "a.txt"


def test_owned_folder_is_replaced_only_with_overwrite_and_only_when_it_holds_nothing_else(tmp_path):
    ours = _folder(tmp_path / "ours", "toy.json", "a.txt")
    with pytest.raises(AvelError) as err:
        check_owned_folder(ours, KIND, overwrite=False)
    assert str(err.value) == (f"--out: {ours} already holds a toy folder; continue it with --more {ours}, replace it "
                              f"with --overwrite, or choose another folder")
    assert check_owned_folder(ours, KIND, overwrite=True) is True
    (ours / "notes.txt").write_text("the user's")
    with pytest.raises(AvelError) as err:
        check_owned_folder(ours, KIND, overwrite=True)
    assert str(err.value) == (f"--overwrite: {ours} holds notes.txt, which avel-dgl did not write; move it away "
                              f"(--overwrite deletes only a toy folder's own files) or choose another folder")
    assert check_owned_folder(ours, KIND, overwrite=None) is True  # continued, never replaced: the file stays


def test_owned_folder_place_a_file_in_the_way(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(AvelError, match=rf"^--out: {tmp_path}/f is a file, expected a folder$"):
        check_owned_folder(tmp_path / "f", KIND, overwrite=True)
    with pytest.raises(AvelError, match=rf"^--cache-dir: cannot create {tmp_path}/f/c: {tmp_path}/f is a file$"):
        outputs.check_folder_place(tmp_path / "f" / "c", "--cache-dir")


def test_owned_folder_probes_where_the_command_will_write(tmp_path, monkeypatch):
    """In place: the folder itself; swapped in (report, make-synthetic): its parent, where the new
    folder is staged, also when the folder exists; only read (ablate --dry-run): nowhere."""
    probed = []
    monkeypatch.setattr(outputs, "_probe", lambda folder, option: probed.append(folder))
    ours = _folder(tmp_path / "ours", "toy.json")
    check_owned_folder(ours, KIND, overwrite=True)
    check_owned_folder(ours, dataclasses.replace(KIND, swapped=True), overwrite=True)
    check_owned_folder(ours, KIND, overwrite=None, write=False)
    assert probed == [ours, tmp_path]
    assert report.REPORT_FOLDER.swapped and synthetic.SYNTHETIC_FOLDER.swapped and not train.RUN_FOLDER.swapped


def test_owned_folder_grid_and_extract_folders_follow_the_rule(tmp_path):
    users = _folder(tmp_path / "users", "notes.txt")
    with pytest.raises(AvelError, match="holds no avel-dgl ablate grid"):
        ablate.check_grid_folder(users, tmp_path, ablate.Config(), write=False)
    with pytest.raises(AvelError, match="holds no avel-dgl extract folder"):  # stricter since issue 24
        check_owned_folder(users, extract.EXTRACT_FOLDER, overwrite=None)
    (users / extract.PARTS_DIR).mkdir()
    assert check_owned_folder(users, extract.EXTRACT_FOLDER, overwrite=None) is True


def test_owned_folder_written_beside_and_swapped_into_place(tmp_path):
    out = _folder(tmp_path / "out", "toy.json")
    with pytest.raises(AvelError, match=rf"^{out}: cannot write, the file system of .* is full .*; kept$"):
        with writing_folder(out, "kept") as folder:
            (folder / "toy.json").write_text("new")
            raise OSError(28, os.strerror(28))
    assert (out / "toy.json").read_text() == "toy.json" and os.listdir(tmp_path) == ["out"]
    with writing_folder(out, "kept") as folder:
        assert folder.parent == tmp_path and folder.name.startswith(".out.partial-")
        (folder / "toy.json").write_text("new")
    assert (out / "toy.json").read_text() == "new" and sorted(os.listdir(out)) == ["toy.json"]
    assert os.listdir(tmp_path) == ["out"]  # no staging or earlier folder left



def test_owned_folder_swap_that_fails_puts_the_earlier_folder_back(tmp_path, monkeypatch):
    out = _folder(tmp_path / "out", "toy.json")
    replace = os.replace

    def failing(src, dst):
        if ".partial-" in str(src):
            raise OSError(28, os.strerror(28))
        replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", failing)
    with pytest.raises(AvelError, match="is full"):
        with writing_folder(out, "kept") as folder:
            (folder / "toy.json").write_text("new")
    assert (out / "toy.json").read_text() == "toy.json" and os.listdir(tmp_path) == ["out"]


def test_all_or_none_writer_names_the_file_and_changes_nothing(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("earlier")

    def full(path: Path):
        raise OSError(28, os.strerror(28))

    with pytest.raises(AvelError, match=rf"^{b}: cannot write, the file system of .* is full"):
        write_all_or_none({a: lambda path: path.write_text("new"), b: full})
    assert a.read_text() == "earlier" and sorted(os.listdir(tmp_path)) == ["a.txt"]
    write_all_or_none({a: lambda path: path.write_text("new"), b: lambda path: path.write_text("b")})
    assert a.read_text() == "new" and b.read_text() == "b"


def test_publish_holds_a_signal_until_every_target_is_in_place(tmp_path, monkeypatch):
    pairs = []
    for name in ("a", "b"):
        (tmp_path / f".{name}.new").write_text("new")
        pairs.append((tmp_path / f".{name}.new", tmp_path / name))
    replace = os.replace

    def signalled(src, dst):
        replace(src, dst)
        os.kill(os.getpid(), signal.SIGINT)  # arrives after the first rename

    monkeypatch.setattr(outputs.os, "replace", signalled)
    with pytest.raises(Interrupted):
        with interrupt.interruptible():
            outputs.publish(pairs)
    assert (tmp_path / "a").read_text() == "new" and (tmp_path / "b").read_text() == "new"


def test_file_kind_is_the_one_reader_of_what_a_file_is(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "page").write_text("<?xml version='1.0'?>\n<html><body>saved</body></html>")
    (tmp_path / "error").write_text("<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code></Error>")
    with zipfile.ZipFile(tmp_path / "whole.zip", "w") as z:
        z.writestr("x", "y" * 100)
    (tmp_path / "half.zip").write_bytes((tmp_path / "whole.zip").read_bytes()[:60])
    assert [file_kind(tmp_path / n) for n in ("empty", "page", "whole.zip", "half.zip")] == \
        ["an empty file", "an HTML page", "a zip archive", outputs.TRUNCATED_ZIP]
    assert weights.what_it_is(tmp_path / "half.zip").startswith("a truncated file")
    assert weights.what_it_is(tmp_path / "page").startswith("a web page (HTML)")
    assert file_kind(tmp_path / "error") == "an XML document"
    assert weights.what_it_is(tmp_path / "error").startswith("a web page (XML)")
    assert weights.what_it_is(tmp_path / "whole.zip") is None


def test_size_text_is_the_one_size_wording():
    assert [outputs.size_text(n) for n in (812, 100_000, 1 << 30)] == ["812 B", "97.7 KiB", "1.0 GiB"]


def test_localize_checks_every_place_before_loading_the_model(tmp_path):
    loaded = []
    cache = tmp_path / "cache"
    with pytest.raises(AvelError, match="^--out: .* is a folder"):
        localize.localize([], lambda: loaded.append(1), tmp_path, cache_dir=cache)
    with pytest.raises(AvelError, match="^--mode: expected one of whole, windows"):
        localize.localize([], lambda: loaded.append(1), tmp_path / "e.json", cache_dir=cache, mode="bits")
    assert loaded == []
    with pytest.raises(AvelError):  # no video given: found after the model is loaded (a bad checkpoint fails first)
        localize.localize([], lambda: loaded.append(1), tmp_path / "e.json", cache_dir=cache)
    assert loaded == [1]


def test_a_killed_reports_staging_in_a_run_folder_is_the_runs_to_delete():
    assert RunFolder.owns(".report.partial-123") and RunFolder.owns(".report.old-123")
    assert not RunFolder.owns("report.partial-123")  # not a hidden staging name: the user's


def test_owned_folder_swap_finishes_under_a_signal_and_leaves_no_earlier_folder(tmp_path, monkeypatch):
    out = _folder(tmp_path / "out", "toy.json")
    replace = os.replace

    def signalled(src, dst):
        replace(src, dst)
        os.kill(os.getpid(), signal.SIGTERM)  # arrives after the earlier folder is moved aside

    monkeypatch.setattr(outputs.os, "replace", signalled)
    with pytest.raises(Interrupted):
        with interrupt.interruptible(), writing_folder(out, "kept") as folder:
            (folder / "toy.json").write_text("new")
    assert (out / "toy.json").read_text() == "new" and os.listdir(tmp_path) == ["out"]


@pytest.fixture
def process_handlers():
    """SIGINT and SIGTERM handled as a command that installs none meets them (KeyboardInterrupt;
    SIGTERM would end the test process), unblocked; restored afterwards."""
    def interrupt_(signum, frame):
        raise KeyboardInterrupt
    previous = {s: signal.signal(s, interrupt_) for s in (signal.SIGINT, signal.SIGTERM)}
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, previous)
    yield
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    for s, handler in previous.items():
        signal.signal(s, handler)


def _signalling_replace(monkeypatch, signum, when=lambda dst: True):
    """os.replace as outputs calls it, raising `signum` in this thread after the renames `when`
    picks. (Not os.kill: a signal sent to the process may be taken by another thread, tqdm's
    monitor here, and reach the main thread's handler only after the block has ended.)"""
    replace = os.replace

    def signalled(src, dst):
        replace(src, dst)
        if when(Path(dst)):
            signal.raise_signal(signum)
    monkeypatch.setattr(outputs.os, "replace", signalled)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_the_swap_outside_interruptible_waits_for_it(tmp_path, monkeypatch, signum, process_handlers):
    """report and predict install no handlers: Ctrl-C between the two renames of the swap must
    neither leave the earlier folder hidden nor delete the new one; it takes effect after."""
    out = _folder(tmp_path / "out", "toy.json")
    _signalling_replace(monkeypatch, signum)  # the first arrives after the earlier folder is moved aside
    with pytest.raises(KeyboardInterrupt):
        with writing_folder(out, "kept") as folder:
            (folder / "toy.json").write_text("new")
    assert (out / "toy.json").read_text() == "new" and os.listdir(tmp_path) == ["out"]


def test_publish_outside_interruptible_puts_every_file_in_place_before_ctrl_c(tmp_path, monkeypatch,
                                                                            process_handlers):
    targets = [tmp_path / "a.json", tmp_path / "b.csv"]
    _signalling_replace(monkeypatch, signal.SIGINT, when=lambda dst: dst == targets[0])
    with pytest.raises(KeyboardInterrupt):
        outputs.write_texts({targets[0]: "a", targets[1]: "b"})
    assert [t.read_text() for t in targets] == ["a", "b"] and sorted(os.listdir(tmp_path)) == ["a.json", "b.csv"]
