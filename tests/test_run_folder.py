"""run_folder.RunFolder, the one owner of a run folder's file names: a finished run holds exactly
the files it names, under the documented names, and every name avel-dgl writes there is one
that --overwrite may delete (RunFolder.NAMES)."""

from __future__ import annotations

import fnmatch

from avel_dgl.format import LABEL_SETS
from avel_dgl.run_folder import RunFolder


def owned(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in RunFolder.NAMES)


def test_a_finished_run_holds_the_files_its_layout_names(tiny_run):
    files = RunFolder(tiny_run)
    named = {files.config, files.runtime, files.metrics, files.best, files.last, *files.result_files()}
    assert set(tiny_run.iterdir()) == named
    assert sorted(p.name for p in named) == sorted(["config.json", "runtime.json", "metrics.csv", "best.pt", "last.pt",
                                                    "results.json", *(f"per_class_{s}.csv" for s in LABEL_SETS)])
    assert all(owned(p.name) for p in named) and files.holds_run()


def test_other_commands_files_are_named_and_owned(tmp_path):
    files = RunFolder(tmp_path)
    kept = [RunFolder.kept_copy(p, 2) for p in files.result_files()]
    assert kept[0].name == "results_2_epochs.json" and kept[1].name == f"per_class_{next(iter(LABEL_SETS))}_2_epochs.csv"
    assert all(owned(p.name) for p in [*kept, files.report]) and owned("eval_o-ave.json") and owned("eval_c-ave.csv")
    assert not owned("notes.txt") and not files.holds_run()
