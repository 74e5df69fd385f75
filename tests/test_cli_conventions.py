"""The conventions every avel-dgl command shares (issue 12): --version, --debug anywhere, help
text on every option, --quiet for progress bars, a run folder as --checkpoint, the renamed
predict option, and outputs that appear all together or not at all. The faults themselves are
rows of tests/test_faults.py."""

from __future__ import annotations

import json

import click
import pytest
import torch

from avel_dgl import __version__, progress
from avel_dgl.outputs import publish
from avel_dgl.runtime import DEVICES
from avel_dgl.errors import AvelError
from cli.main import main
from helpers import invoke


def test_version():
    result = invoke(["--version"])
    assert result.exit_code == 0 and result.stdout == f"avel-dgl {__version__}\n"


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_subcommand_shows_the_traceback(where, ave_dir, tmp_path):
    args = ["train", "--data", ave_dir, "--out", tmp_path / "run", "--preset", "huge"]
    result = invoke(["--debug", *args] if where == "before" else [*args, "--debug"])
    assert isinstance(result.exception, AvelError)
    assert str(result.exception) == "preset: expected one of paper, small, large, found 'huge'"  # the library's wording


def test_every_option_of_every_command_has_help_text():
    missing = [f"{name} {param.opts[0]}" for name, command in main.commands.items() for param in command.params
               if isinstance(param, click.Option) and not param.hidden and not (param.help or "").strip()]
    missing += [f"avel-dgl {p.opts[0]}" for p in main.params if isinstance(p, click.Option) and not p.help]
    assert missing == []


def test_quiet_turns_progress_bars_off_for_that_command_only(tiny_run, ave_dir, tmp_path):
    args = ["predict", "--checkpoint", tiny_run, "--data", ave_dir, "--subset", "3"]
    assert invoke([*args, "--out", tmp_path / "a.json", "--quiet"]).exit_code == 0
    assert not progress.shown() and progress.bar(range(2)).disable
    assert invoke([*args, "--out", tmp_path / "b.json"]).exit_code == 0
    assert progress.shown()


def test_a_run_folder_as_checkpoint_means_its_best_pt(tiny_run, ave_dir, tmp_path):
    for checkpoint, out in ((tiny_run, "folder.json"), (tiny_run / "best.pt", "file.json")):
        result = invoke(["predict", "--checkpoint", checkpoint, "--data", ave_dir, "--out", tmp_path / out, "--quiet"])
        assert result.exit_code == 0, result.output
    folder, file = (json.loads((tmp_path / n).read_text()) for n in ("folder.json", "file.json"))
    assert folder["checkpoint"] == str(tiny_run / "best.pt") and folder["videos"] == file["videos"]


def test_predict_split_still_works_as_the_old_name_of_subset(tiny_run, ave_dir, tmp_path):
    result = invoke(["predict", "--checkpoint", tiny_run, "--data", ave_dir, "--split", "3,5",
                     "--out", tmp_path / "p.json", "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.stderr == "avel-dgl: warning: predict --split is now called --subset (--split still works for now)\n"
    assert [v["row"] for v in json.loads((tmp_path / "p.json").read_text())["videos"]] == [3, 5]


def test_evaluate_overwrite_replaces_both_outputs(tiny_run, ave_dir, tmp_path):
    args = ["evaluate", "--checkpoint", tiny_run, "--data", ave_dir, "--out", tmp_path / "eval"]
    assert invoke(args).exit_code == 0
    earlier = {name: (tmp_path / name).read_text() + "\n" for name in ("eval.json", "eval.csv")}
    for name, text in earlier.items():  # still marked as evaluate's (JSON key, CSV header): a later copy
        (tmp_path / name).write_text(text)
    assert invoke(args).exit_code == 2 and (tmp_path / "eval.json").read_text() == earlier["eval.json"]
    assert invoke([*args, "--overwrite"]).exit_code == 0
    assert json.loads((tmp_path / "eval.json").read_text())["videos"] == 12
    assert (tmp_path / "eval.csv").read_text().startswith("class,")
    assert (tmp_path / "eval.json").read_text() != earlier["eval.json"]


def test_publish_puts_every_target_back_when_one_rename_fails(tmp_path):
    first, second = tmp_path / "p.csv", tmp_path / "p_segments.csv"
    first.write_text("earlier events")
    second.write_text("earlier segments")
    new = [tmp_path / "p.csv.tmp", tmp_path / "p_segments.csv.tmp"]
    new[0].write_text("new")  # the second temporary file is missing: its rename fails
    with pytest.raises(AvelError, match="p_segments.csv: cannot write .*; no output was changed"):
        publish(list(zip(new, (first, second))))
    assert first.read_text() == "earlier events" and second.read_text() == "earlier segments"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv", "p_segments.csv"]


def test_publish_never_moves_a_folder(tmp_path):
    target = tmp_path / "p_segments.csv"
    target.mkdir()
    (target / "inside").write_text("the user's")
    (tmp_path / "new").write_text("new")
    with pytest.raises(AvelError, match="p_segments.csv: is a folder, expected a file"):
        publish([(tmp_path / "new", target)])
    assert (target / "inside").read_text() == "the user's"


# --device (issue 13): every command that runs a model takes it, with one meaning everywhere.
MODEL_COMMANDS = ("train", "ablate", "evaluate", "predict", "report", "fam", "extract", "localize")


def test_every_command_that_runs_a_model_takes_device():
    choices = {name: main.commands[name].params for name in MODEL_COMMANDS}
    choices = {name: next((tuple(p.type.choices) for p in params if p.name == "device"), None)
               for name, params in choices.items()}
    assert choices == {name: tuple(DEVICES) for name in MODEL_COMMANDS}  # the names resolve_device takes


def _device_run(command: str, run, data, out) -> tuple[list, list[str]]:
    """The arguments of `command` writing under `out`, and the files it writes there."""
    return {
        "evaluate": (["evaluate", "--checkpoint", run, "--data", data, "--out", out / "eval"],
                     ["eval.json", "eval.csv"]),
        "predict": (["predict", "--checkpoint", run, "--data", data, "--out", out / "p.json"], ["p.json"]),
        "report": (["report", run, "--data", data, "--out", out / "report"],
                   ["report/" + name for name in ("report.html", "curves.png", "per_class.png", "confusion_o-ave.png",
                                                  "confusion_c-ave.png", "timelines.png")]),
        "fam": (["fam", "--checkpoint", run, "--data", data, "--video", 3, "--out", out / "fam.png"], ["fam.png"]),
    }[command]


@pytest.mark.parametrize("command", ["evaluate", "predict", "report", "fam"])
def test_device_cpu_writes_what_the_default_writes(command, tiny_run, ave_dir, tmp_path):
    written = {}
    for name, extra in (("default", []), ("cpu", ["--device", "cpu"])):
        args, files = _device_run(command, tiny_run, ave_dir, tmp_path / name)
        (tmp_path / name).mkdir()
        result = invoke([*args, *extra, "--quiet"])
        assert result.exit_code == 0, result.output
        written[name] = {f: (tmp_path / name / f).read_bytes() for f in files}
    assert written["cpu"] == written["default"]


@pytest.mark.parametrize("command", ["evaluate", "predict", "report", "fam"])
@pytest.mark.parametrize("device, message", [
    ("gpu", "Invalid value for '--device': 'gpu' is not one of 'auto', 'cpu', 'cuda'. (see avel-dgl {} --help)"),
    ("cuda", "--device cuda: torch sees no CUDA device on this machine; use --device cpu or auto"),
])
def test_a_device_it_cannot_use_is_one_line_and_writes_nothing(command, device, message, tiny_run, ave_dir,
                                                                 tmp_path):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    args, _ = _device_run(command, tiny_run, ave_dir, tmp_path)
    result = invoke([*args, "--device", device, "--quiet"])
    assert result.exit_code != 0 and result.stdout == ""
    assert result.stderr == f"avel-dgl: error: {message.format(command)}\n"
    assert list(tmp_path.iterdir()) == []


# The modules behind the commands that use a trained model: none of them is training code.
INFERENCE = ("avel_dgl.engine", "avel_dgl.checkpoint", "avel_dgl.runtime", "avel_dgl.predict", "avel_dgl.report",
             "avel_dgl.fam", "avel_dgl.localize", "avel_dgl.video.extract")


def test_inference_commands_never_import_training_code(tiny_run, ave_dir, tmp_path):
    """In a fresh process: import the modules behind evaluate, predict, report, fam, localize and
    extract, then run each command (the first four to the end on a tiny run; localize and extract
    until their input video is found missing, after their imports and, for localize, loading the
    model). avel_dgl.train must not be among the modules loaded."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    missing = tmp_path / "missing.mp4"
    commands = [
        ["evaluate", "--help"],
        ["evaluate", "--checkpoint", tiny_run, "--data", ave_dir, "--out", tmp_path / "eval", "--quiet"],
        ["predict", "--checkpoint", tiny_run, "--data", ave_dir, "--out", tmp_path / "p.json", "--quiet"],
        ["report", tiny_run, "--data", ave_dir, "--out", tmp_path / "report", "--quiet"],
        ["fam", "--checkpoint", tiny_run, "--data", ave_dir, "--video", "3", "--out", tmp_path / "fam.png", "--quiet"],
        ["localize", missing, "--checkpoint", tiny_run, "--out", tmp_path / "l.json", "--quiet"],
        ["extract", missing, "--out", tmp_path / "features", "--quiet"],
    ]
    script = ("import importlib, json, sys\n"
              "from click.testing import CliRunner\n"
              "from cli.main import main\n"
              f"for name in {INFERENCE!r}: importlib.import_module(name)\n"
              "codes = [CliRunner().invoke(main, args).exit_code for args in json.loads(sys.argv[1])]\n"
              "print(json.dumps([codes, 'avel_dgl.train' in sys.modules]))\n")
    argv = json.dumps([[str(a) for a in args] for args in commands])
    done = subprocess.run([sys.executable, "-c", script, argv], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"},
                          timeout=600)
    assert done.returncode == 0, done.stderr
    codes, train_loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert codes == [0, 0, 0, 0, 0, 2, 2]  # each command ran (the last two stop at the missing video)
    assert (tmp_path / "eval.json").is_file() and (tmp_path / "report" / "report.html").is_file()
    assert not train_loaded


def test_localize_feature_folder_is_feature_cache_and_the_old_spelling_says_so(tmp_path):
    """--cache-dir names the pooled-cache folder everywhere; localize's folder of extracted
    features, once also --cache-dir, is --feature-cache, and the old spelling is one clear line."""
    result = invoke(["localize", tmp_path / "clip.mp4", "--cache-dir", tmp_path / "features",
                     "--checkpoint", tmp_path / "no.pt", "--out", tmp_path / "e.json"])
    assert result.exit_code == 2 and result.stderr == (
        "avel-dgl: error: --cache-dir: localize's folder of extracted features is now --feature-cache (--cache-dir "
        f"names the pooled-cache folder of the commands reading a data folder); use --feature-cache {tmp_path / 'features'}\n")
    assert list(tmp_path.iterdir()) == []
    assert "--feature-cache" in invoke(["localize", "--help"]).stdout
