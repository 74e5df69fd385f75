"""Shared fixtures: a small AVE-format data folder and a tiny reference run (made once per test
session), and the fault table's summary line. The helpers the tests import are in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import FAULT_TALLY, TINY, TINY_EPOCHS, invoke, write_small_ave

# One torch thread: the tests run tiny models, where a second thread gains little and, on a
# machine busy with other work, oversubscription makes steps tens of times slower.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ave_dir(tmp_path_factory) -> Path:
    """A small valid AVE-format folder (120 videos: 96 train, 12 val, 12 test). Read-only: copy it
    (shutil.copytree) before changing anything in it."""
    return write_small_ave(tmp_path_factory.mktemp("ave"))


@pytest.fixture(scope="session")
def tiny_run(ave_dir, tmp_path_factory) -> Path:
    """A finished run of the tiny config (seed 0) on `ave_dir`: the reference the fault tests
    compare resumed runs with. Read-only: copy it before changing anything in it."""
    run = tmp_path_factory.mktemp("tiny") / "run"
    result = invoke(["train", "--data", ave_dir, "--out", run, "--epochs", TINY_EPOCHS, *TINY])
    assert result.exit_code == 0, result.output
    return run


def pytest_terminal_summary(terminalreporter):
    if not FAULT_TALLY:
        return
    count = lambda key: sum(bool(t[key]) for t in FAULT_TALLY)  # noqa: E731
    clean = sum(t["one_line"] and not (t["traceback"] or t["partial"] or t["lost"]) for t in FAULT_TALLY)
    terminalreporter.write_line(
        f"fault table: {len(FAULT_TALLY)} inputs tried, {clean} clean one-line messages, "
        f"{count('traceback')} tracebacks, {count('partial')} partial outputs, "
        f"{sum(t['lost'] for t in FAULT_TALLY)} user files lost")
