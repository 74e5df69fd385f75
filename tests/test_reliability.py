"""The fault suite, part 1: a killed or interrupted run resumes bit for bit, checkpoint writes are
atomic, signals during the end-of-epoch writes wait for them, and seeds decide a run.
(Part 2, tests/test_faults.py: malformed inputs and options. docs/RELIABILITY.md maps each
guarantee to its test.)"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from avel_dgl import checkpoint, engine, interrupt
from avel_dgl.errors import Interrupted
from avel_dgl.format import LABEL_SETS
from avel_dgl.run_folder import RunFolder
from avel_dgl.train import TIMING_FIELDS
from helpers import CPU, TINY, TINY_EPOCHS, TINY_STEPS_PER_EPOCH, invoke, loss_hook, send_signal

REPO = Path(__file__).resolve().parents[1]
STEPS = TINY_EPOCHS * TINY_STEPS_PER_EPOCH


def metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in csv.DictReader(f)]


def assert_equal(a, b, where: str) -> None:
    """Recursive equality, tensors compared exactly (torch.equal)."""
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def assert_same_run(expected: Path, run: Path) -> None:
    """Same per-epoch metrics (timing aside), results, and checkpoints bit for bit: weights, and in
    last.pt the optimizer, scheduler, sampler and RNG states a further epoch would start from."""
    assert metrics(run) == metrics(expected)
    assert (run / "results.json").read_text() == (expected / "results.json").read_text()
    for name in ("best.pt", "last.pt"):
        a, b = checkpoint.read_checkpoint(expected / name), checkpoint.read_checkpoint(run / name)
        assert (a["epoch"], a["val_acc"]) == (b["epoch"], b["val_acc"]), name
        assert_equal(a["model"], b["model"], f"{name}:model")
    a, b = (checkpoint.read_checkpoint(r / "last.pt")["training"] for r in (expected, run))
    for key in ("optimizer", "scheduler", "generator", "rng", "replicas", "best_acc", "best_epoch"):
        assert_equal(a[key], b[key], f"last.pt:training.{key}")


def train_args(ave_dir: Path, run: Path, *extra) -> list:
    return ["train", "--data", ave_dir, "--out", run, "--epochs", TINY_EPOCHS, *TINY, *extra]


def test_sigkill_at_a_random_step_then_resume_equals_uninterrupted_run(ave_dir, tiny_run, tmp_path):
    step = random.SystemRandom().randint(1, STEPS)  # the step whose loss is computed when killed
    run = tmp_path / "run"
    killed = subprocess.run(
        [sys.executable, str(REPO / "tests" / "fault_runner.py"), str(step), "SIGKILL",
         *map(str, train_args(ave_dir, run))],
        env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, f"step {step}: {killed.stderr}"
    # Killed during epoch e + 1: last.pt holds epoch e (0: the state before the first step).
    assert checkpoint.read_checkpoint(run / "last.pt")["epoch"] == (step - 1) // TINY_STEPS_PER_EPOCH
    assert not list(run.glob("*.tmp")), f"step {step}"

    resumed = invoke(["train", "--resume", run])
    assert resumed.exit_code == 0, f"step {step}: {resumed.output}"
    assert_same_run(tiny_run, run)


def signal_at_step(monkeypatch, step: int, signame: str) -> None:
    """Send this process `signame` when the training loss of `step` (from 1, over the run) is computed."""
    monkeypatch.setattr(engine, "sel_loss", loss_hook(step, send_signal(getattr(signal, signame))))


def check_stopped_by_signal(signame: str, ave_dir: Path, run: Path, monkeypatch) -> int:
    """Train until `signame` arrives at a random step; check the stop (exit code, message, the
    state on disk) and return the step."""
    step = random.SystemRandom().randint(1, STEPS)
    signal_at_step(monkeypatch, step, signame)
    stopped = invoke(train_args(ave_dir, run))
    monkeypatch.undo()
    epoch = (step - 1) // TINY_STEPS_PER_EPOCH  # the step in progress is abandoned
    assert stopped.exit_code == 128 + getattr(signal, signame), f"step {step}: {stopped.output}"
    assert stopped.stderr == (f"avel-dgl: interrupted: {signame}: train stopped; {run}/last.pt holds epoch {epoch} of "
                              f"{TINY_EPOCHS}; continue with: avel-dgl train --resume {run}\n")
    assert checkpoint.read_checkpoint(run / "last.pt")["epoch"] == epoch
    assert len(metrics(run)) == epoch
    assert not list(run.glob("*.tmp"))
    return step


def test_sigint_stops_the_run_with_a_resume_hint(ave_dir, tmp_path, monkeypatch):
    check_stopped_by_signal("SIGINT", ave_dir, tmp_path / "run", monkeypatch)


def test_sigterm_stops_the_run_and_resume_equals_uninterrupted_run(ave_dir, tiny_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    step = check_stopped_by_signal("SIGTERM", ave_dir, run, monkeypatch)
    resumed = invoke(["train", "--resume", run])
    assert resumed.exit_code == 0, f"step {step}: {resumed.output}"
    assert_same_run(tiny_run, run)


def test_signal_during_end_of_epoch_writes_waits_for_them(ave_dir, tmp_path, monkeypatch):
    """SIGTERM arriving while last.pt of epoch 1 is being written: the write finishes, metrics.csv
    follows, then the run stops; the folder describes epoch 1 throughout."""
    save = torch.save

    def signalling_save(obj, f):
        if f.name.endswith("last.pt.tmp") and obj["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        save(obj, f)

    monkeypatch.setattr(torch, "save", signalling_save)
    run = tmp_path / "run"
    stopped = invoke(train_args(ave_dir, run))
    assert stopped.exit_code == 143, stopped.output
    assert "last.pt holds epoch 1 of" in stopped.stderr
    assert checkpoint.read_checkpoint(run / "last.pt")["epoch"] == 1
    assert checkpoint.read_checkpoint(run / "best.pt")["epoch"] == 1
    assert [row["epoch"] for row in metrics(run)] == ["1"]


def test_deferred_holds_a_signal_until_the_block_ends():
    done = []
    with interrupt.interruptible():
        with pytest.raises(Interrupted) as stopped:
            with interrupt.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("rest of the block")
        assert done == ["rest of the block"]
        assert stopped.value.exit_code == 143
        with pytest.raises(Interrupted):  # outside deferred(): at once
            os.kill(os.getpid(), signal.SIGINT)
            done.append("never")
    assert done == ["rest of the block"]


def test_resume_with_more_epochs_equals_the_longer_run(ave_dir, tiny_run, tmp_path):
    run = tmp_path / "run"
    short = invoke(["train", "--data", ave_dir, "--out", run, "--epochs", 1, *TINY])
    assert short.exit_code == 0, short.output
    longer = invoke(["train", "--resume", run, "--epochs", TINY_EPOCHS, "--quiet"])
    assert longer.exit_code == 0, longer.output
    assert_same_run(tiny_run, run)
    assert (run / "config.json").read_text() == (tiny_run / "config.json").read_text()


def test_extending_a_finished_run_keeps_its_results_under_its_epoch_count(ave_dir, tmp_path):
    run = tmp_path / "run"
    assert invoke(["train", "--data", ave_dir, "--out", run, "--epochs", 1, *TINY]).exit_code == 0
    finished = {p.name: p.read_text() for p in run.iterdir() if p.suffix in (".json", ".csv")}
    same = invoke(["train", "--resume", run, "--quiet"])  # finished already: tested again, nothing kept
    assert same.exit_code == 0, same.output
    assert not list(run.glob("*_epochs.*"))
    for epochs in (2, 3):  # two extensions: the first's kept files must survive the second
        out = invoke(["train", "--resume", run, "--epochs", epochs])
        assert out.exit_code == 0, out.output
        assert f"kept the {epochs - 1}-epoch run's results as results_{epochs - 1}_epochs.json" in out.output
    assert (run / "results_1_epochs.json").read_text() == finished["results.json"]
    for label_set in LABEL_SETS:
        assert (run / f"per_class_{label_set}_1_epochs.csv").read_text() == finished[f"per_class_{label_set}.csv"]
        assert (run / f"per_class_{label_set}_2_epochs.csv").is_file()
    assert json.loads((run / "results_2_epochs.json").read_text())["best_epoch"] in (1, 2)
    assert len(metrics(run)) == 3 and (run / "results.json").is_file()
    assert RunFolder.owns("results_2_epochs.json")  # so --overwrite may replace such a run


def test_same_seed_gives_the_same_run_and_another_seed_a_different_one(ave_dir, tiny_run, tmp_path):
    same = invoke(train_args(ave_dir, tmp_path / "same", "--seed", 0))
    assert same.exit_code == 0, same.output
    assert_same_run(tiny_run, tmp_path / "same")
    other = invoke(["train", "--data", ave_dir, "--out", tmp_path / "other", "--epochs", 1, *TINY, "--seed", 1])
    assert other.exit_code == 0, other.output
    assert metrics(tmp_path / "other")[0] != metrics(tiny_run)[0]


class Crash(BaseException):
    """Stands for the process dying: no handler runs, nothing is cleaned up."""


@pytest.mark.parametrize("moment", ["while writing", "between write and rename"])
def test_crash_while_saving_leaves_the_previous_checkpoint_loadable(moment, tiny_run, tmp_path, monkeypatch):
    path = tmp_path / "best.pt"
    shutil.copy(tiny_run / "best.pt", path)
    model, config, before = engine.load_model(path, CPU)
    for p in model.parameters():  # a new version that differs from the saved one everywhere
        p.data.add_(1)
    if moment == "while writing":
        monkeypatch.setattr(torch, "save", lambda obj, f: (f.write(b"PK\x03\x04 half a zip"), f.flush(), _raise(Crash())))
    else:
        monkeypatch.setattr(os, "replace", lambda src, dst: _raise(Crash()))

    with pytest.raises(Crash):
        checkpoint.save_checkpoint(path, model, config, epoch=99, val_acc=0.0)
    assert (tmp_path / "best.pt.tmp").exists()  # the crash's leftover, never read
    _, _, after = engine.load_model(path, CPU)
    assert after["epoch"] == before["epoch"]
    assert_equal(after["model"], before["model"], "model")

    monkeypatch.undo()
    checkpoint.save_checkpoint(path, model, config, epoch=99, val_acc=0.0)  # the next save replaces both
    assert engine.load_model(path, CPU)[2]["epoch"] == 99
    assert not (tmp_path / "best.pt.tmp").exists()


def _raise(error: BaseException):
    raise error


def test_resuming_a_finished_run_on_another_thread_count_warns_and_gives_its_results(tiny_run, tmp_path,
                                                                                      monkeypatch):
    from avel_dgl import runtime

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    monkeypatch.setattr(runtime, "set_threads", lambda processes=1: None)  # keep the count set below
    threads, written = torch.get_num_threads(), checkpoint.read_checkpoint(run / "last.pt")["training"]["threads"]
    other = 1 if written != 1 else 2
    torch.set_num_threads(other)
    try:
        resumed = invoke(["train", "--resume", run, "--quiet"])
    finally:
        torch.set_num_threads(threads)
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stderr == (f"avel-dgl: warning: {run}/last.pt was written with {written} torch threads, now "
                              f"{other}: the resumed run may differ from an uninterrupted one in the last bits\n")
    assert (run / "results.json").read_text() == (tiny_run / "results.json").read_text()
