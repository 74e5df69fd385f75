"""`avel-dgl ablate`: a tiny grid end to end, resume after an interrupted run, the aggregation,
and one-line errors for bad options."""

from __future__ import annotations

import csv
import json
import signal
import statistics

import pytest

from avel_dgl import ablate, engine, grid, tables
from avel_dgl.config import get_preset, replace
from avel_dgl.data import cache
from avel_dgl.errors import Interrupted
from helpers import CPU, GRID_TINY as TINY, GRID_TINY_OPTIONS as TINY_OPTIONS, invoke, loss_hook, send_signal

def read_table(out):
    with open(out / "table.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_tiny_grid_end_to_end(ave_dir, tmp_path):
    out = tmp_path / "grid"
    result = invoke(["ablate", "--data", ave_dir, "--out", out, "--variants", "tcn,dpnet", "--tasks", "sel,wsel",
                     "--seeds", 2, *TINY_OPTIONS])
    assert result.exit_code == 0, result.output + result.stderr
    trained = 2 * 2 * 4 - 2  # seeds x variants x columns, tcn +Link N/A
    assert f"[{trained}/{trained}]" in result.output and "left" in result.output

    rows = read_table(out)
    assert len(rows) == 2 * 2 * 4  # label sets x variants x columns
    for row in rows:
        expected = "N/A" if (row["variant"], row["column"]) == ("tcn", "sel-link") else "done"
        assert row["status"] == expected, row
        if expected != "done":
            assert row["seeds"] == "0" and row["mean_pct"] == ""
            continue
        values = [100 * json.loads((out / row["variant"] / row["column"] / f"seed{s}" / "results.json")
                                   .read_text())[f"test_acc_{row['label_set']}"] for s in range(2)]
        assert float(row["mean_pct"]) == pytest.approx(statistics.mean(values), abs=1e-3)
        assert float(row["std_pct"]) == pytest.approx(statistics.stdev(values), abs=1e-3)

    md = (out / "table.md").read_text()
    assert "| # | Network | Perspective setting | Layers | Params | WSEL | SEL Base | +Rep. | +Link |" in md
    assert "O-AVE" in md and "C-AVE" in md
    tcn_row = next(line for line in md.splitlines() if "TCN only" in line)
    assert tcn_row.rstrip().endswith("| N/A |")
    assert " ± " in tcn_row


def test_resume_after_an_interrupted_run(ave_dir, tmp_path, monkeypatch):
    """SIGINT in the third run stops the grid with one message; the same call again keeps the two
    finished runs, resumes the interrupted one from its last.pt and trains the last one."""
    out = tmp_path / "grid"
    base = replace(get_preset("small"), **TINY)
    args = (base, ave_dir, out, ["rgct", "dpnet"], ["sel"], 2, CPU)
    # 96 training videos in batches of 32: 3 steps a run, so step 7 is the third run's first step
    monkeypatch.setattr(engine, "sel_loss", loss_hook(7, send_signal(signal.SIGINT)))
    with pytest.raises(Interrupted, match="ablate stopped; 2 of 4 runs done; run the same avel-dgl ablate"):
        ablate.run_grid(*args, echo=lambda s: None)
    cells = grid.plan(base, out, ["rgct", "dpnet"], ["sel"], 2)
    finished = {c.folder: (c.folder / "results.json").stat().st_mtime_ns for c in cells[:2]}
    interrupted = cells[2].folder
    assert (interrupted / "last.pt").is_file() and not (interrupted / "results.json").exists()
    assert (out / "table.md").is_file()  # tables are written after every finished run

    monkeypatch.undo()
    trained, lines = [], []
    real_cell = ablate.train_cell
    monkeypatch.setattr(ablate, "train_cell", lambda config, data, folder, *a, **k: trained.append(folder)
                        or real_cell(config, data, folder, *a, **k))
    rows = ablate.run_grid(*args, echo=lines.append)
    assert trained == [c.folder for c in cells[2:]]
    assert any(line.startswith("grid: 4 runs (2 variants, columns sel, 2 seeds); 2 done before, 2 to train; "
                               "about ") and line.endswith(" by the epoch times of the runs done") for line in lines)
    assert f"resumed the interrupted run in {interrupted}" in lines
    assert {f: (f / "results.json").stat().st_mtime_ns for f in finished} == finished
    assert grid.read_results(interrupted) is not None
    assert {r["status"] for r in rows if r["column"] == "sel"} == {"done"}


def test_a_run_that_cannot_resume_is_trained_again(ave_dir, tmp_path):
    out = tmp_path / "grid"
    base = replace(get_preset("small"), **TINY)
    ablate.run_grid(base, ave_dir, out, ["dpnet"], ["sel"], 1, CPU, echo=lambda s: None)
    folder = grid.run_dir(out, "dpnet", "sel", 0)
    (folder / "results.json").unlink()
    (folder / "last.pt").write_bytes(b"not a checkpoint")
    lines = []
    rows = ablate.run_grid(base, ave_dir, out, ["dpnet"], ["sel"], 1, CPU, echo=lines.append)
    assert any(line.startswith(f"note: cannot resume {folder}") and "training it again from scratch" in line
               for line in lines)
    assert grid.read_results(folder) is not None
    assert {r["status"] for r in rows if r["column"] == "sel"} == {"done"}


def test_summary_mean_std_and_partial_cells(tmp_path):
    """Aggregation over hand-written results: mean, sample std, and a cell missing a seed."""
    base = replace(get_preset("small"), **TINY)
    accs = {("dpnet", 0): 0.70, ("dpnet", 1): 0.74, ("dpnet", 2): 0.75, ("rgct", 0): 0.61}
    for (variant, seed), acc in accs.items():
        folder = grid.run_dir(tmp_path, variant, "sel", seed)
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps(
            {"seed": seed, "best_epoch": 1, "val_acc": acc, "test_acc_o-ave": acc, "test_acc_c-ave": acc / 2}))
    grid.run_dir(tmp_path, "rgct", "sel", 1).mkdir(parents=True)  # an interrupted run: not counted
    rows = {(r["label_set"], r["variant"], r["column"]): r for r in tables.summarize(base, tmp_path, ["rgct", "dpnet"], 3)}
    dpnet = rows["o-ave", "dpnet", "sel"]
    assert dpnet["status"] == "done" and dpnet["seeds"] == 3
    assert dpnet["mean_pct"] == pytest.approx(73.0, abs=1e-3)
    assert dpnet["std_pct"] == pytest.approx(statistics.stdev([70, 74, 75]), abs=1e-3)
    assert rows["c-ave", "dpnet", "sel"]["mean_pct"] == pytest.approx(36.5, abs=1e-3)
    rgct = rows["o-ave", "rgct", "sel"]
    assert (rgct["status"], rgct["seeds"], rgct["std_pct"]) == ("partial", 1, None)
    assert rows["o-ave", "rgct", "wsel"]["status"] == "not run"
    md = tables.markdown(list(rows.values()))
    assert "**73.00 ± 2.65**" in md and "61.00 (1/3 seeds)" in md


def test_a_rerun_of_some_variants_keeps_the_others_finished_runs_in_the_table(tmp_path):
    """`ablate --variants tcn` on a grid where tcn and rgct ran: the table still shows rgct."""
    base = replace(get_preset("small"), **TINY)
    for variant, acc in (("tcn", 0.6), ("rgct", 0.7)):
        folder = grid.run_dir(tmp_path, variant, "sel", 0)
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps(
            {"seed": 0, "best_epoch": 1, "val_acc": acc, "test_acc_o-ave": acc, "test_acc_c-ave": None}))
    rows = {(r["label_set"], r["variant"], r["column"]): r for r in tables.summarize(base, tmp_path, ["tcn"], 1)}
    assert rows["o-ave", "rgct", "sel"]["mean_pct"] == pytest.approx(70.0)
    assert rows["o-ave", "tcn", "sel"]["status"] == "done"
    assert rows["c-ave", "rgct", "sel"]["status"] == "skipped"  # finished without right_labels.h5
    assert "**70.00**" in tables.markdown(list(rows.values()))


def test_time_left_comes_from_finished_runs_of_the_same_kind(tmp_path):
    """Each unfinished run costs the summed epoch seconds (metrics.csv) of finished runs of its
    variant and column, else of its column, else of all; a resumed run counts whole."""
    def finished(variant, column, seed, epoch_seconds):
        cell = grid.Cell(variant, column, seed, grid.run_dir(tmp_path, variant, column, seed))
        cell.folder.mkdir(parents=True)
        rows = "".join(f"{e},{s}\n" for e, s in enumerate(epoch_seconds, 1))
        (cell.folder / "metrics.csv").write_text("epoch,seconds\n" + rows)
        return cell

    done = [finished("dpnet", "sel", 0, [40, 60]), finished("dpnet", "sel", 1, [50, 70]),  # 100 and 120 s
            finished("rgct", "sel", 0, [200, 200]),  # 400 s
            finished("rgct", "sel-rep", 0, [150, 150])]  # 300 s (resumed: two attempts, one file)
    assert grid.training_seconds(done[0].folder) == 100
    todo = lambda variant, column: grid.Cell(variant, column, 2, tmp_path / "unused")
    assert grid.seconds_left(done, [todo("dpnet", "sel")], jobs=1) == pytest.approx(110)  # same variant, column
    assert grid.seconds_left(done, [todo("rgat", "sel-rep")], jobs=1) == pytest.approx(300)  # same column
    assert grid.seconds_left(done, [todo("rgat", "wsel")], jobs=1) == pytest.approx(920 / 4)  # any run
    assert grid.seconds_left(done, [todo("dpnet", "sel"), todo("rgct", "sel-rep")], jobs=2) == pytest.approx(205)
    assert grid.seconds_left(done, [todo("dpnet", "sel")], jobs=2) == pytest.approx(110)  # one run: one process


def test_markdown_rows_keep_the_table_columns(tmp_path):
    """The PPBlock's layer name holds '|': escaped, every row still has the header's cell count."""
    base = replace(get_preset("small"), **TINY)
    md = tables.markdown(tables.summarize(base, tmp_path, ["dpnet-parallel", "dpnet"], 1))
    rows = [line for line in md.splitlines() if line.startswith("|")]
    cells = {len(line.replace("\\|", "").split("|")) for line in rows}
    assert len(rows) == 2 * 4 and len(cells) == 1  # header, rule and two variants per label set
    assert "RGCT\\|\\|TCN" in md


def test_dry_run_lists_variants_and_trains_nothing(ave_dir, tmp_path):
    out = tmp_path / "grid"
    result = invoke(["ablate", "--data", ave_dir, "--out", out, "--dry-run", *TINY_OPTIONS])
    assert result.exit_code == 0, result.stderr
    for variant in ("rgat", "rgct", "tcn", "tcn-rgct", "rgct-tcn", "dpnet-parallel", "dpnet-graph-second", "dpnet"):
        assert any(line.startswith(variant + " ") for line in result.output.splitlines())
    assert "RGCT -> TCN " in result.output and "x1" not in result.output  # one block: no repeat count
    assert not out.exists()


def test_dry_run_reads_the_data_through_the_given_cache_dir(ave_dir, tmp_path, monkeypatch):
    """--cache-dir is in force before the dry run reads every split (it pools the visual maps)."""
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "inherited"))  # restored after the test
    result = invoke(["ablate", "--data", ave_dir, "--out", tmp_path / "grid", "--dry-run", "--cache-dir",
                     tmp_path / "given", *TINY_OPTIONS])
    assert result.exit_code == 0, result.stderr
    assert any((tmp_path / "given").iterdir()) and not (tmp_path / "inherited").exists()


@pytest.mark.parametrize("args, message", [
    (["--variants", "dpnet,nope"], "--variants: expected 'all' or a comma list of"),
    (["--tasks", "sel,strong"], "--tasks: expected a comma list of sel, wsel, found 'sel,strong'"),
    (["--preset", "huge"], "--preset: expected one of"),
])
def test_bad_options_fail_with_one_line(ave_dir, tmp_path, args, message):
    result = invoke(["ablate", "--data", ave_dir, "--out", tmp_path / "grid", *TINY_OPTIONS, *args])
    assert result.exit_code == 2
    assert result.stderr.startswith("avel-dgl: error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "grid").exists()


def test_resume_with_other_settings_is_refused(ave_dir, tmp_path):
    out = tmp_path / "grid"
    first = invoke(["ablate", "--data", ave_dir, "--out", out, "--variants", "dpnet", "--tasks", "sel",
                    "--seeds", 1, *TINY_OPTIONS])
    assert first.exit_code == 0, first.stderr
    again = invoke(["ablate", "--data", ave_dir, "--out", out, "--variants", "dpnet", "--tasks", "sel",
                    "--seeds", 1, *TINY_OPTIONS, "--epochs", "2"])
    assert again.exit_code == 2
    assert "train.epochs: 1 there, 2 now" in again.stderr and len(again.stderr.strip().splitlines()) == 1


def test_missing_data_fails_before_any_run(tmp_path):
    result = invoke(["ablate", "--data", tmp_path / "nowhere", "--out", tmp_path / "grid", *TINY_OPTIONS])
    assert result.exit_code == 2 and "--data:" in result.stderr
    assert not (tmp_path / "grid").exists()
