"""A run folder's file layout: the one place that names the files of a training run's folder
(`avel-dgl train --out RUN_DIR`) and those other commands add there. `train` writes them through
it; `train --resume`, `report`, `evaluate`/`predict` (a run folder stands for its best.pt) and
`ablate` read them through it. Standard library only: checkpoint.py uses it and never loads DGL.

    config.json         the resolved config (for people; last.pt holds the one in force)
    runtime.json        device, eq 12 kernel, processes, backend, global and per-process batch
    metrics.csv         one row per epoch: lr, train loss/acc, val acc/loss (the task's loss), seconds
    best.pt / last.pt   the checkpoint with the best validation accuracy / of the last epoch
    results.json        best epoch, its val accuracy, its test accuracy on o-ave and c-ave, the data folder,
                        and with replicate the replica counts (replicas, sub-events, fallbacks, copied)
    per_class_<set>.csv per-class test accuracy of best.pt on each label set
    results_<E>_epochs.json, per_class_<set>_<E>_epochs.csv
                        a finished E-epoch run's results, kept when `--resume --epochs` trains it further
    eval_<set>.json, eval_<set>.csv   `evaluate`'s default outputs beside a run's checkpoint
    report/             `report`'s default folder

A folder holds a run when it holds config.json (written when the run starts, with last.pt).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from avel_dgl.format import LABEL_SETS


@dataclass(frozen=True)
class RunFolder:
    """The files of the run in `path`, by what they hold."""

    path: Path

    # Every name avel-dgl may write into a run folder, as fnmatch patterns: the run's own files,
    # `evaluate`'s default eval_<set> outputs, `report`'s folder, temporary files and the staging
    # folders a killed report leaves. A name that matches none is a user's file (what --overwrite
    # must never delete).
    NAMES: ClassVar[tuple[str, ...]] = (
        "config.json", "runtime.json", "metrics.csv", "best.pt", "last.pt", "results.json",
        "results_*_epochs.json", "per_class_*.csv", "eval_*.json", "eval_*.csv", "report",
        "*.tmp", ".*.tmp", ".*.new", ".*.partial-*", ".*.old-*")

    MARKER: ClassVar[str] = "config.json"  # a folder holding it holds a run (what --overwrite checks for)

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config(self) -> Path:
        return self.path / self.MARKER

    @property
    def runtime(self) -> Path:
        return self.path / "runtime.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    @property
    def results(self) -> Path:
        return self.path / "results.json"

    def per_class(self, label_set: str) -> Path:
        return self.path / f"per_class_{label_set}.csv"

    def result_files(self) -> list[Path]:
        """results.json and the per-class table of every label set: what a finished run tests into."""
        return [self.results, *(self.per_class(s) for s in LABEL_SETS)]

    @staticmethod
    def kept_copy(path: Path, epochs: int) -> Path:
        """Where a result file of a finished `epochs`-epoch run is kept when the run trains further."""
        return path.with_name(f"{path.stem}_{epochs}_epochs{path.suffix}")

    @property
    def report(self) -> Path:
        return self.path / "report"

    def eval_prefix(self, label_set: str) -> Path:
        """`evaluate`'s default output (FILE.json and FILE.csv) for a checkpoint of this run."""
        return self.path / f"eval_{label_set}"

    @classmethod
    def owns(cls, name: str) -> bool:
        """Whether avel-dgl writes files of this name into a run folder (matches one of NAMES)."""
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in cls.NAMES)

    def holds_run(self) -> bool:
        """Whether the folder holds a run (its config.json)."""
        return self.config.is_file()
