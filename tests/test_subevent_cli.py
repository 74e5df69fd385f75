"""`avel-dgl build-subevents` and `avel-dgl train --replicate --link` end to end, on synthetic data."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from click.testing import CliRunner

from avel_dgl.checkpoint import read_checkpoint
from avel_dgl.data.dataset import load_split
from avel_dgl.data.subevents import build_database, check_database, default_path, load_database
from avel_dgl.data.synthetic import make_synthetic
from avel_dgl.train import TIMING_FIELDS
from cli.main import main


@pytest.fixture
def data(tmp_path):
    """A fresh synthetic AVE folder per test (build-subevents writes into it)."""
    return make_synthetic(tmp_path / "syn", videos=100, seed=0, visual_dtype="float32")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def check_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avel-dgl: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_build_subevents_writes_the_default_database_and_a_per_class_table(data):
    result = run("build-subevents", "--data", data)
    assert result.exit_code == 0, result.output
    path = default_path(data)
    train = load_split(data, "train")
    db = load_database(path)
    check_database(db, train, path)
    rebuilt = build_database(train)
    assert (db.row == rebuilt.row).all() and (db.start == rebuilt.start).all() and len(db) == len(rebuilt)
    header = result.output.splitlines()[0].split()
    assert header[:4] == ["class", "name", "kind", "entries"] and header[4:] == [f"L{n}" for n in range(1, 11)]
    assert f"{len(train)} training videos" in result.output and f"{len(db)} database entries" in result.output
    assert f"wrote {path}" in result.output

    again = run("build-subevents", "--data", data, "--out", data / "copy.h5")
    assert again.exit_code == 0
    assert (data / "copy.h5").read_bytes() == path.read_bytes()  # deterministic


def test_build_subevents_on_a_missing_folder_is_one_line(tmp_path):
    check_one_line_error(run("build-subevents", "--data", tmp_path / "nope"), f"{tmp_path / 'nope'}/", "file not found")


def test_train_with_replicate_and_link_for_two_epochs(data, tmp_path):
    out = tmp_path / "run"
    result = run("train", "--data", data, "--out", out, "--epochs", 2, "--replicate", "--link",
                 "--width", 16, "--blocks", 1, "--batch-size", 48)  # not --quiet: it leaves out the log lines
    assert result.exit_code == 0, result.output
    assert "no sub-event database" in result.stderr  # built in memory, said once
    assert result.stderr.count("replicate:") == 1
    results = json.loads((out / "results.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["replicate"] and config["train"]["link"]
    n_train = len(load_split(data, "train"))
    assert results["replicas"]["replicas"] == 2 * n_train  # one replica per video per epoch
    assert 0 <= results["replicas"]["fallbacks"] <= results["replicas"]["sub_events"]
    assert (out / "best.pt").is_file()


def test_train_with_a_missing_or_foreign_database_fails_before_writing_the_run(data, tmp_path):
    out = tmp_path / "run"
    check_one_line_error(run("train", "--data", data, "--out", out, "--replicate", "--subevents", tmp_path / "no.h5"),
                   "no.h5: sub-event database not found")
    other = make_synthetic(tmp_path / "other", videos=40, seed=1, visual_dtype="float32")
    assert run("build-subevents", "--data", other).exit_code == 0
    check_one_line_error(run("train", "--data", data, "--out", out, "--replicate", "--subevents", default_path(other)),
                   "built from other training data")
    assert not out.exists()


def test_subevents_without_replicate_and_replicate_with_wsel_are_rejected(data, tmp_path):
    db = default_path(data)
    assert run("build-subevents", "--data", data).exit_code == 0
    check_one_line_error(run("train", "--data", data, "--out", tmp_path / "r", "--subevents", db, "--no-replicate"),
                         "--subevents")
    check_one_line_error(run("train", "--task", "wsel", "--data", data, "--out", tmp_path / "r", "--replicate"),
                   "--replicate: only for --task sel", "found --task wsel")


def test_replicate_link_run_resumed_after_one_epoch_equals_the_uninterrupted_run(ave_dir, tmp_path):
    # The replica sampler's generator and counts travel in last.pt, so epoch 2's replicas match.
    tiny = ["--width", 16, "--blocks", 1, "--batch-size", 48, "--quiet", "--replicate", "--link"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert run("train", "--data", ave_dir, "--out", full, "--epochs", 2, *tiny).exit_code == 0
    assert run("train", "--data", ave_dir, "--out", part, "--epochs", 1, *tiny).exit_code == 0
    resumed = run("train", "--resume", part, "--epochs", 2, "--quiet")
    assert resumed.exit_code == 0, resumed.output

    def metrics(r):
        with open(r / "metrics.csv") as f:
            return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in csv.DictReader(f)]

    assert metrics(part) == metrics(full) and len(metrics(full)) == 2
    assert json.loads((part / "results.json").read_text()) == json.loads((full / "results.json").read_text())
    a, b = read_checkpoint(full / "last.pt"), read_checkpoint(part / "last.pt")
    assert a["training"]["replicas"] == b["training"]["replicas"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
