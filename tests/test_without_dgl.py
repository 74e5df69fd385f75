"""Without DGL (issue 26): the CLI in a subprocess with a stand-in `dgl` package first on
PYTHONPATH that cannot be imported (tests/fixtures/no_dgl), as where no DGL wheel fits the
installed Python, torch or numpy. Every command runs eq 12 on the torch kernel over edge lists
(graph.EdgeLists), says so in one notice line, and trains to the same metrics as `--kernel torch`
where DGL imports; `--kernel dgl` is one clear error."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import TINY, needs_dgl
from video_files import make_video

REPO = Path(__file__).resolve().parents[1]
NO_DGL = REPO / "tests" / "fixtures" / "no_dgl"
NOTICE = "avel-dgl: notice: eq 12 runs on the torch kernel: DGL does not import here (ImportError: DGL made unimportable"

# A tiny SEL run with Replicate and Link (linked training graphs, plain ones for validation and
# test) and a tiny WSEL run (Replicate is SEL-only), 2 epochs each.
RUNS = {"sel_replicate_link": ["--replicate", "--link"], "wsel": ["--task", "wsel"]}

# The commands of one test process, run in order in one fresh process as `avel-dgl` runs each
# (its own output on stdout and stderr), then a JSON line of their exit codes (1 for a crash, its
# traceback on stderr). `localize` gets random networks in place of the pretrained ones it would
# load, as in tests/test_localize.py.
DRIVER = """import json, sys, traceback
from avel_dgl import localize
from cli.main import main

def random_networks(*args, **kwargs):
    import torch
    from avel_dgl.video import extract, vggish
    from video_files import SmallVisual
    torch.manual_seed(0)
    return extract.Networks(vggish.AudioNet(None), SmallVisual())

localize.load_networks = random_networks
localize.weights_identity = lambda *args, **kwargs: "test weights"
codes = []
for args in json.loads(sys.argv[1]):
    try:
        main(args, prog_name="avel-dgl", standalone_mode=False)
        codes.append(0)
    except SystemExit as e:
        codes.append(e.code or 0)
    except Exception:
        traceback.print_exc()
        codes.append(1)
print(json.dumps(codes))
"""


def run_commands(commands: list[list], with_dgl: bool) -> tuple[list[int], str]:
    """Exit codes and stderr of `commands` run one after another in a fresh process, DGL
    importable or not."""
    paths = ([] if with_dgl else [NO_DGL]) + [REPO, REPO / "tests"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
    argv = json.dumps([[str(a) for a in args] for args in commands])
    done = subprocess.run([sys.executable, "-c", DRIVER, argv], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def train_commands(data: Path, root: Path, *kernel: str) -> list[list]:
    return [["train", "--data", data, "--out", root / name, "--epochs", 2, *TINY, *extra, *kernel]
            for name, extra in RUNS.items()]


@pytest.fixture(scope="module")
def without_dgl(ave_dir, tmp_path_factory):
    """Without DGL, in one process: both tiny runs, then predict, evaluate and localize with the
    first run's checkpoint, then a run asking for --kernel dgl. (root, exit codes, stderr)."""
    root = tmp_path_factory.mktemp("without_dgl")
    run = root / "sel_replicate_link"
    use = [["predict", "--checkpoint", run, "--data", ave_dir, "--subset", "0,3,5", "--out", root / "p.json", "--quiet"],
           ["evaluate", "--split", "o-ave", "--checkpoint", run, "--data", ave_dir, "--out", root / "eval", "--quiet"],
           ["localize", make_video(root / "clip.mkv"), "--checkpoint", run, "--out", root / "events.json",
            "--feature-cache", root / "cache", "--frames-per-segment", 2, "--quiet"],
           ["train", "--data", ave_dir, "--out", root / "asked_dgl", "--kernel", "dgl", *TINY]]
    return (root, *run_commands(train_commands(ave_dir, root) + use, with_dgl=False))


def _metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_without_dgl_every_command_runs_on_the_torch_kernel_said_once(without_dgl):
    root, codes, stderr = without_dgl
    assert codes[:4] == [0, 0, 0, 0], stderr  # train, train, predict, evaluate (localize: below)
    for name in RUNS:
        info = json.loads((root / name / "runtime.json").read_text())
        assert (info["kernel"], info["dgl"]) == ("torch", None)
        assert len(_metrics(root / name)) == 2
    assert len(json.loads((root / "p.json").read_text())["videos"]) == 3
    assert (root / "eval.json").is_file() and (root / "eval.csv").is_file()
    notices = [line for line in stderr.splitlines() if "notice" in line]
    assert len(notices) == 1 and notices[0].startswith(NOTICE), stderr


def test_localize_without_dgl(without_dgl):
    root, codes, stderr = without_dgl
    assert codes[4] == 0, stderr
    assert len(json.loads((root / "events.json").read_text())["videos"][0]["segment_probs"]) == 10


def test_kernel_dgl_without_dgl_is_one_clear_error(without_dgl):
    root, codes, stderr = without_dgl
    assert codes[-1] == 2
    assert [line for line in stderr.splitlines() if "error" in line] == [
        "avel-dgl: error: --kernel dgl: DGL does not import here (ImportError: DGL made unimportable by "
        "tests/fixtures/no_dgl); use --kernel torch or auto"]
    assert not (root / "asked_dgl").exists()


@needs_dgl
def test_without_dgl_training_equals_the_torch_kernel_with_dgl(without_dgl, ave_dir, tmp_path):
    """The same runs with DGL importable and `--kernel torch` (DGL's heterograph as the structure):
    the same metrics, accuracies exactly and losses to 1e-6, and the same test accuracies."""
    root, _, _ = without_dgl
    codes, stderr = run_commands(train_commands(ave_dir, tmp_path, "--kernel", "torch"), with_dgl=True)
    assert codes == [0, 0], stderr
    for name in RUNS:
        ours, theirs = _metrics(root / name), _metrics(tmp_path / name)
        assert len(ours) == len(theirs) == 2
        for a, b in zip(ours, theirs):
            for key in ("epoch", "lr", "train_acc", "val_acc"):
                assert a[key] == b[key], (name, key)
            for key in ("train_loss", "val_loss"):
                assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-6), (name, key)
        results = [json.loads((run / name / "results.json").read_text()) for run in (root, tmp_path)]
        for key in ("best_epoch", "test_acc_o-ave", "test_acc_c-ave"):
            assert results[0][key] == results[1][key], (name, key)
