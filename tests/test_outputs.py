"""What a new user hit (issue 25): full disks (injected at the write layer by tests/test_faults.py,
and here on a real small file system where the test may mount one), the mark that lets
--overwrite replace only avel-dgl's own files, huge counts, Ctrl-C and killed runs of commands
other than train, and the messages that misled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from matplotlib.figure import Figure

from avel_dgl import checkpoint, interrupt, outputs
from avel_dgl.data import cache, synthetic
from avel_dgl.data.ave import RIGHT_LABELS_FILE
from avel_dgl.errors import AvelError, Interrupted
from avel_dgl.outputs import check_output, mark, written_by_avel
from ave_files import write_ave_dir
from helpers import TINY, invoke

# ---- the mark: --overwrite replaces only what avel-dgl wrote ---------------------------------------


def _png(path: Path, software: str | None) -> Path:
    fig = Figure(figsize=(1, 1))
    fig.savefig(path, format="png", metadata={"Software": software})
    return path


def _h5(path: Path, written_by: str | None) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(2))
        if written_by is not None:
            f.attrs["written_by"] = written_by
    return path


@pytest.mark.parametrize("make, ours", [
    (lambda p: p.write_text(json.dumps({"written_by": mark("predict"), "videos": []}, indent=1)), True),
    (lambda p: p.write_text(json.dumps({"videos": [], "written_by": mark("predict")})), False),  # not first: not ours
    (lambda p: p.write_text("row,class,name,start,end,confidence\n3,1,Bell,0.0,2.0,0.9\n"), True),  # predict's table
    (lambda p: p.write_text("class,name,segments,correct,accuracy\n"), True),  # evaluate's table
    (lambda p: p.write_text("row,class,name\n"), False),  # a header avel-dgl never writes
    (lambda p: _h5(p, mark("build-subevents")), True),
    (lambda p: _h5(p, None), False),
    (lambda p: _png(p, mark("fam")), True),
    (lambda p: _png(p, None), False),  # matplotlib's own Software chunk
    (lambda p: p.write_text(f"<html><head>{outputs.html_mark('localize')}</head></html>"), True),
    (lambda p: p.write_text("my notes"), False),
], ids=["json", "json-mark-not-first", "csv-predict", "csv-evaluate", "csv-other", "h5", "h5-unmarked", "png",
        "png-unmarked", "html", "text"])
def test_the_mark_is_read_from_the_content_whatever_the_name(tmp_path, make, ours):
    path = tmp_path / "file.out"
    make(path)
    assert written_by_avel(path) is ours
    if ours:
        assert check_output(path, overwrite=True) == path
    else:
        with pytest.raises(AvelError, match="was not written by avel-dgl"):
            check_output(path, overwrite=True)


def test_predict_overwrite_replaces_its_own_outputs_and_never_a_users_file(tiny_run, ave_dir, tmp_path):
    for out in (tmp_path / "p.json", tmp_path / "p.csv"):
        args = ["predict", "--checkpoint", tiny_run, "--data", ave_dir, "--subset", "3", "--out", out, "--quiet"]
        assert invoke(args).exit_code == 0
        assert invoke([*args[:5], "--subset", "4", *args[7:], "--overwrite"]).exit_code == 0  # its own: replaced
        assert "4," in out.read_text() or '"row": 4' in out.read_text()
    assert json.loads((tmp_path / "p.json").read_text())["written_by"] == "avel-dgl predict"
    mine = tmp_path / "mine.json"
    mine.write_text('{"mine": true}')
    result = invoke(["predict", "--checkpoint", tiny_run, "--data", ave_dir, "--out", mine, "--overwrite", "--quiet"])
    assert result.exit_code == 2 and mine.read_text() == '{"mine": true}'


def test_build_subevents_and_fam_mark_their_files(ave_dir, tiny_run, tmp_path):
    db = tmp_path / "db.h5"
    assert invoke(["build-subevents", "--data", ave_dir, "--out", db]).exit_code == 0
    assert invoke(["build-subevents", "--data", ave_dir, "--out", db, "--overwrite"]).exit_code == 0
    png = tmp_path / "f.png"
    result = invoke(["fam", "--checkpoint", tiny_run, "--data", ave_dir, "--video", 3, "--out", png, "--quiet"])
    assert result.exit_code == 0, result.output
    assert written_by_avel(db) and written_by_avel(png) and png.read_bytes().startswith(outputs.PNG_MAGIC)


# ---- disk full on a real small file system ------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs mounted for the test (root only); skipped where mounting is not permitted."""
    folder = tmp_path / "small"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {(done.stderr or done.stdout).strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)  # lazy: even with a file still open


def fill(folder: Path, leave: int) -> None:
    """Take all but `leave` bytes of the file system of `folder`."""
    (folder / "filler").write_bytes(b"\0" * max(0, outputs.free_bytes(folder) - leave))


def one_line_full(result, path: Path) -> str:
    """The one line of a write of `path` that the full disk stopped."""
    lines = result.stderr.splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith(f"avel-dgl: error: {path}: cannot write, the file system of {path.parent} (1.0 MiB) "
                               f"is full (No space left on device); ")
    return lines[0]


def test_train_on_a_full_disk_gives_one_line_and_leaves_no_temporary(small_disk, ave_dir):
    run = small_disk / "run"  # the first files fit, best.pt after the first epoch does not
    result = invoke(["train", "--data", ave_dir, "--out", run, "--epochs", 1, *TINY])
    one_line_full(result, run / "best.pt")  # torch.save's RuntimeError "unexpected pos", worded
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    assert checkpoint.read_checkpoint(run / "last.pt")["epoch"] == 0  # the earlier state: intact, resumable


def test_predict_on_a_full_disk_keeps_the_earlier_output(small_disk, tiny_run, ave_dir):
    out = small_disk / "p.json"
    args = ["predict", "--checkpoint", tiny_run, "--data", ave_dir, "--out", out, "--quiet"]
    assert invoke([*args, "--subset", "3"]).exit_code == 0
    earlier = out.read_bytes()
    fill(small_disk, 4096)
    one_line_full(invoke([*args, "--subset", "all", "--overwrite"]), out)
    assert out.read_bytes() == earlier
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "p.json"]


def test_make_synthetic_on_a_small_disk_is_refused_before_any_work_or_stops_cleanly(small_disk):
    out = small_disk / "syn"
    result = invoke(["make-synthetic", "--out", out, "--videos", 4, "--quiet"])
    assert result.exit_code == 2 and result.stderr.startswith(f"avel-dgl: error: --out {out}: 4 videos needs about ")
    assert result.stderr.endswith(f"but the file system of {small_disk} (1.0 MiB) has 1.0 MiB free; free some "
                                  f"space or choose another --out\n")
    # As if the estimate were wrong: the disk fills while writing. In a process of its own, as a user
    # runs it: when HDF5 itself met the full disk, h5py crashed that process at exit (signal 11).
    code = ("import sys; from avel_dgl.data import synthetic; synthetic.estimated_bytes = lambda videos, dtype: 0; "
            "from cli.main import main; main(sys.argv[1:], prog_name='avel-dgl')")
    done = subprocess.run([sys.executable, "-c", code, "make-synthetic", "--out", str(out), "--videos", "4", "--quiet"],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 2
    assert done.stderr == (f"avel-dgl: error: {out}: cannot write, the file system of {small_disk} (1.0 MiB) is "
                           f"full (No space left on device); nothing was written\n")
    assert list(small_disk.iterdir()) == []


# ---- make-synthetic: bounded memory, killed runs, Ctrl-C ---------------------------------------

def test_make_synthetic_writes_in_chunks_whose_size_does_not_grow_with_the_videos(tmp_path, monkeypatch):
    largest = {}
    write = synthetic._write_rows

    def watch(dset, start, rows):
        largest[dset.file.filename] = max(largest.get(dset.file.filename, 0), rows.nbytes)
        write(dset, start, rows)

    monkeypatch.setattr(synthetic, "_write_rows", watch)
    peaks = []
    for videos in (6, 24):
        largest.clear()
        synthetic.make_synthetic(tmp_path / str(videos), videos=videos, chunk_videos=2, visual_dtype="float32")
        peaks.append({Path(name).name: size for name, size in largest.items()})
    assert peaks[0] == peaks[1]  # the largest array written at once: the same for 4 times the videos
    assert set(peaks[0]) >= {"audio_feature.h5", "visual_feature.h5", "labels.h5", "right_labels.h5", "mil_labels.h5"}


def _dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_rerun_removes_what_killed_runs_left_and_only_that(tmp_path):
    out = tmp_path / "syn"
    pid = _dead_pid()
    killed = tmp_path / f".syn.partial-{pid}"  # kill -9 of run PID: its staging folder, marked
    killed.mkdir()
    (killed / outputs.STAGING_MARKER).touch()
    (killed / "audio_feature.h5").write_bytes(b"half")
    unmarked = tmp_path / f".syn.partial-{pid + 1}"  # the same name pattern, not ours
    unmarked.mkdir()
    running = tmp_path / f".syn.partial-{os.getppid()}"  # a live process's
    running.mkdir()
    (running / outputs.STAGING_MARKER).touch()
    synthetic.make_synthetic(out, videos=4, visual_dtype="float32")
    assert not killed.exists() and unmarked.is_dir() and running.is_dir()
    assert not (out / outputs.STAGING_MARKER).exists()


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_make_synthetic_stopped_by_a_signal_says_so_and_leaves_nothing(tmp_path, monkeypatch, signum, code):
    write = synthetic._write_features

    def stopped(*args, **kwargs):
        os.kill(os.getpid(), signum)
        write(*args, **kwargs)

    monkeypatch.setattr(synthetic, "_write_features", stopped)
    out = tmp_path / "syn"
    result = invoke(["make-synthetic", "--out", out, "--videos", 4, "--quiet"])
    assert result.exit_code == code
    assert result.stderr == (f"avel-dgl: interrupted: {signal.Signals(signum).name}: make-synthetic stopped; "
                             f"nothing was written to {out}; run the same command again\n")
    assert list(tmp_path.iterdir()) == []


def test_check_data_stops_on_ctrl_c_even_when_a_finalizer_drops_the_exception(tmp_path, monkeypatch):
    """h5py closes objects in weakref callbacks; a KeyboardInterrupt raised there is printed as
    'Exception ignored' and dropped. The signal must still stop the build: no cache, exit 130."""
    data = write_ave_dir(tmp_path / "data")
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    pool = cache.pool_maps

    class Finalized:
        def __del__(self):  # the signal arrives while a finalizer runs: its exception is dropped
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100):  # bytecodes, between which the handler runs
                pass

    def dropped(maps):
        Finalized()
        return pool(maps)

    monkeypatch.setattr(cache, "pool_maps", dropped)
    result = invoke(["check-data", data, "--quiet"])
    assert result.exit_code == 130 and result.stdout == ""
    assert result.stderr.startswith("avel-dgl: interrupted: SIGINT: check-data stopped; the pooled visual cache "
                                    "was not written")
    assert not list((data / cache.CACHE_DIR).glob("*"))


def test_stoppable_turns_a_keyboard_interrupt_into_the_one_line():
    with pytest.raises(Interrupted, match="^SIGINT: extract stopped; nothing was written$") as stop:
        with interrupt.stoppable("extract", "nothing was written"):
            raise KeyboardInterrupt
    assert stop.value.exit_code == 130


# ---- C-AVE without right_labels.h5; log lines on stderr -----------------------------------------

def test_train_without_right_labels_skips_c_ave_everywhere(tmp_path):
    data = write_ave_dir(tmp_path / "data")
    (data / RIGHT_LABELS_FILE).unlink()
    run = tmp_path / "run"
    result = invoke(["train", "--data", data, "--out", run, "--epochs", 1, *[a for a in TINY if a != "--quiet"]])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [  # the result alone on stdout; the log lines on stderr
        line for line in result.stdout.splitlines() if line.startswith("best epoch")]
    assert "c-ave skipped (no right_labels.h5)" in result.stdout
    assert "avel-dgl: device cpu" in result.stderr
    assert f"avel-dgl: C-AVE test accuracy will be skipped: {RIGHT_LABELS_FILE} is absent from {data}" in result.stderr
    results = json.loads((run / "results.json").read_text())
    assert results["test_acc_c-ave"] is None and results["test_acc_o-ave"] is not None
    assert results["skipped"] == {"c-ave": f"{RIGHT_LABELS_FILE} is absent from {data}"}
    assert sorted(p.name for p in run.glob("per_class_*.csv")) == ["per_class_o-ave.csv"]
    report = invoke(["report", run, "--quiet"])
    assert report.exit_code == 0, report.output
    assert report.stderr.count("C-AVE was skipped") == 1
    assert (run / "report" / "confusion_o-ave.png").is_file() and not (run / "report" / "confusion_c-ave.png").exists()


# ---- messages -----------------------------------------------------------------------------------

def test_avel_dgl_without_arguments_prints_the_help():
    result = invoke([])
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout.startswith("Usage: avel-dgl [OPTIONS] COMMAND [ARGS]...") and "make-synthetic" in result.stdout


def test_a_rank_other_than_0_stays_silent_about_an_error_every_rank_meets(ave_dir, tmp_path, monkeypatch):
    """`--nproc 2 --device cuda` on a machine without a GPU: each rank meets the error (before
    joining the process group, which is never reached here); rank 0 alone prints it."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without a GPU")
    args = ["train", "--data", ave_dir, "--out", tmp_path / "run", "--device", "cuda"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    result = invoke(args)
    assert result.exit_code == 2 and result.stderr == ""
    monkeypatch.setenv("RANK", "0")
    result = invoke(args)
    assert result.exit_code == 2 and result.stderr.count("avel-dgl: error:") == 1
