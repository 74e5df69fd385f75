"""benchmarks/gpu_check.py's dry mode (--device cpu, small sizes) end to end, so the GPU check
cannot rot while no GPU runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_mode_runs_every_step_and_prints_one_table(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu",
                           "--work", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[:2] == ["| check | result | seconds | peak GPU memory |", "|---|---|---|---|"]
    checks = [line.split(" | ")[0].removeprefix("| ") for line in lines[2:]]
    assert [c.split(")")[0] + ")" for c in checks[:-1]] == ["(a)"] * 3 + ["(b)"] * 2 + ["(c)"] * 2 + ["(d)"]
    assert checks[-1] == "whole check" and "FAIL" not in done.stdout
    assert "(allclose at 1e-05)" in lines[2] and "acc " in lines[6] and "s per epoch" in lines[7]
    assert (tmp_path / "gpu_check.md").read_text() == done.stdout
