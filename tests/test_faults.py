"""The fault suite, part 2: table-driven malformed inputs and options. Each case runs the CLI and
asserts the exact one-line message on stderr, the exit code, that no traceback escaped, and that
no file in the output area was left half-written (every new or changed file is complete: a
loadable checkpoint, parseable JSON, a rectangular CSV; no temporary file remains)."""

from __future__ import annotations

import builtins
import csv
import errno
import json
import os
import shutil
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
import torch

from avel_dgl import checkpoint, engine, graph, outputs
from avel_dgl.data import cache
from avel_dgl.data.ave import (AUDIO_FILE, LABELS_FILE, NOISY_AUDIO_FILE, ORDER_FILES, RIGHT_LABELS_FILE,
                               VISUAL_FILE)
from avel_dgl.config import get_preset, replace
from avel_dgl.data.synthetic import make_synthetic
from avel_dgl.nn.dpnet import VARIANTS, build
from ave_files import ave_arrays, write_ave_dir
from helpers import FAULT_TALLY, TINY, invoke, loss_hook


class Env:
    """One case's world: good data (`ave_dir`, read-only), the tiny reference run, an output area
    `out` (where the run folder `run` goes) and helpers that break things."""

    def __init__(self, ave_dir: Path, tiny_run: Path, tmp: Path, monkeypatch):
        self.ave_dir, self.tiny_run, self.tmp, self.monkeypatch = ave_dir, tiny_run, tmp, monkeypatch
        self.data = ave_dir
        self.out = tmp / "out"
        self.out.mkdir()
        self.run = self.out / "run"

    def bad_data(self, malformation: str | None = None, arrays: dict | None = None) -> Path:
        """A tiny AVE folder (tests/ave_files.py: 6 videos) with one named malformation."""
        self.data = write_ave_dir(self.tmp / "data", arrays=arrays, malformation=malformation)
        return self.data

    def copy_run(self) -> Path:
        shutil.copytree(self.tiny_run, self.run)
        return self.run

    def edit_config_json(self, **fields) -> None:
        path = self.run / "config.json"
        config = json.loads(path.read_text())
        for key, value in fields.items():
            section, _, name = key.partition(".")
            (config[section] if name else config)[name or section] = value
        path.write_text(json.dumps(config))


def _half(path) -> bytes:
    raw = Path(path).read_bytes()
    return raw[: len(raw) // 2]


def truncated_labels(env: Env) -> Path:
    data = env.bad_data()
    env.labels_size = (data / LABELS_FILE).stat().st_size
    (data / LABELS_FILE).write_bytes(_half(data / LABELS_FILE))
    return data


def huge_audio(env: Env) -> Path:
    """Finite but huge features (float32 max / 10): the first step's loss is not finite."""
    arrays = ave_arrays()
    arrays[AUDIO_FILE][:] = 3e37
    return env.bad_data(arrays=arrays)


@dataclass
class Case:
    id: str
    args: Callable[[Env], list]  # CLI arguments; may prepare files first
    message: Callable[[Env], str]  # the exact line after `prefix`
    after: Callable[[Env], None] = lambda env: None  # extra assertions on what the failure left
    code: int = 2
    writes: bool = False  # False: every file in the case's area (outputs and data) is left as it was
    prefix: str = "avel-dgl: error: "  # "avel-dgl: warning: " for a command that succeeds with one warning


def new_run(env: Env, *extra, out: Path | None = None) -> list:
    return ["train", "--data", env.data, "--out", out or env.run, "--epochs", 2, *TINY, *extra]


def holds(condition: bool) -> None:
    assert condition


def nothing_written(env: Env) -> None:
    assert not env.run.exists()


def unchanged_run(env: Env) -> None:
    for name in ("last.pt", "best.pt", "metrics.csv", "config.json"):
        assert (env.run / name).read_bytes() == (env.tiny_run / name).read_bytes(), name


def kept_epoch(last: int, best: int) -> Callable[[Env], None]:
    """A run stopped during epoch last + 1: last.pt, best.pt and metrics.csv describe epoch `last`."""
    def check(env: Env) -> None:
        assert checkpoint.read_checkpoint(env.run / "last.pt")["epoch"] == last
        assert checkpoint.read_checkpoint(env.run / "best.pt")["epoch"] == best
        with open(env.run / "metrics.csv") as f:
            assert [row["epoch"] for row in csv.DictReader(f)] == [str(e) for e in range(1, last + 1)]
    return check


def nan_loss_at(env: Env, step: int) -> None:
    """The training loss of `step` (from 1, over the run) is NaN (a model that blows up)."""
    env.monkeypatch.setattr(engine, "sel_loss", loss_hook(step, lambda loss: loss * float("nan")))


def nan_weights_after_step(env: Env, call: int) -> None:
    """After the `call`-th optimizer step, one weight is NaN (the last step of an epoch, so no
    later loss sees it)."""
    step, calls = torch.optim.Adam.step, iter(range(1, 10**6))

    def poisoned(self, *args, **kwargs):
        out = step(self, *args, **kwargs)
        if next(calls) == call:
            with torch.no_grad():
                self.param_groups[0]["params"][0].view(-1)[0] = float("nan")
        return out

    env.monkeypatch.setattr(torch.optim.Adam, "step", poisoned)


def disk_full_at_last_pt(env: Env, epoch: int, as_torch: bool = False) -> None:
    """Writing last.pt of `epoch` fails half-way with ENOSPC, as on a full disk; `as_torch`: as
    torch.save reports it, a RuntimeError ("unexpected pos") raised while handling the OSError."""
    save = torch.save

    def full(obj, f):
        if f.name.endswith("last.pt.tmp") and obj["epoch"] == epoch:
            f.write(b"PK\x03\x04 the first bytes")
            try:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError:
                if as_torch:
                    raise RuntimeError("[enforce fail at inline_container.cc:595] . unexpected pos 448 vs 342")
                raise
        save(obj, f)

    env.monkeypatch.setattr(torch, "save", full)


class FillingFile:
    """A file whose writes fail with ENOSPC once `room` characters are written, as on a full disk."""

    def __init__(self, f, room: list[int]):
        self.f, self.room = f, room

    def write(self, text):
        if len(text) > self.room[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room[0] -= len(text)
        return self.f.write(text)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def disk_full_for_outputs(env: Env, room: int = 2000) -> None:
    """ENOSPC injected at the write layer (avel_dgl/outputs.py): its files take `room` characters,
    together, then the disk is full."""
    left = [room]
    env.monkeypatch.setattr(outputs, "open", lambda *a, **k: FillingFile(builtins.open(*a, **k), left), raising=False)


def full_message(path: Path, outcome: str) -> str:
    return f"{path}: cannot write, {outputs.device_of(path)} is full (No space left on device); {outcome}"


def ours(path: Path) -> Path:
    """An earlier output of avel-dgl predict (it carries the mark)."""
    path.write_text('{"written_by": "avel-dgl predict", "videos": []}\n')
    return path


def tcn_checkpoint(env: Env) -> Path:
    config = replace(get_preset("small"), **{"model.variant": "tcn", "model.width": 8})
    path = env.tmp / "tcn.pt"
    checkpoint.save_checkpoint(path, build(config, graph.DEFAULT_KERNEL), config)
    return path


def group_for_labels(env: Env) -> Path:
    """Bad data whose labels.h5 holds a group named 'avadataset' where the array should be."""
    data = env.bad_data()
    (data / LABELS_FILE).unlink()
    with h5py.File(data / LABELS_FILE, "w") as f:
        f.create_group("avadataset").create_dataset("inner", data=np.zeros(3))
    return data


def png_file(env: Env) -> Path:
    path = env.tmp / "picture.png"
    path.write_bytes(outputs.PNG_MAGIC + b"\x00\x00\x00\rIHDR" + bytes(17))
    return path


def moved_data_in_last_pt(env: Env) -> Path:
    """A copy of the tiny run whose last.pt records a data folder that is no longer there."""
    run = env.copy_run()
    ckpt = torch.load(run / "last.pt", weights_only=True)
    ckpt["training"]["data_dir"] = str(env.tmp / "moved")
    torch.save(ckpt, run / "last.pt")
    return run


def moved_data_in_results(env: Env) -> Path:
    run = env.copy_run()
    results = json.loads((run / "results.json").read_text())
    results["data"] = str(env.tmp / "moved")
    (run / "results.json").write_text(json.dumps(results))
    return run


def no_cache_env(env: Env) -> None:
    """No AVEL_CACHE_DIR during the case, and none after it either: --cache-dir sets it for the
    process (for the ranks it launches), and delenv alone would not undo a variable that was absent."""
    env.monkeypatch.setenv(cache.CACHE_ENV, "")
    env.monkeypatch.delenv(cache.CACHE_ENV)


def some_free_bytes(env: Env, free: int = 10 * 2**30) -> None:
    """The file system of the case's area has `free` bytes free (10 GiB)."""
    env.monkeypatch.setattr(outputs, "free_bytes", lambda folder: free)


def eval_checkpoint(env: Env, edit: Callable[[dict], None]) -> list:
    """evaluate on a copy of the tiny run's best.pt changed by `edit`."""
    ckpt = torch.load(env.tiny_run / "best.pt", weights_only=True)
    edit(ckpt)
    path = env.tmp / "other.pt"
    torch.save(ckpt, path)
    return ["evaluate", "--checkpoint", path, "--data", env.data, "--out", env.out / "eval"]


def damaged_checkpoint(env: Env) -> list:
    """evaluate on a copy of best.pt with one byte flipped inside the first tensor's data record."""
    path = env.tmp / "damaged.pt"
    raw = bytearray((env.tiny_run / "best.pt").read_bytes())
    with zipfile.ZipFile(env.tiny_run / "best.pt") as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename)
    name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)  # local file header
    raw[info.header_offset + 30 + name_len + extra_len] ^= 0xFF
    path.write_bytes(bytes(raw))
    env.damaged_record = info.filename
    return ["evaluate", "--checkpoint", path, "--data", env.data, "--out", env.out / "eval"]


def ten_classes(ckpt: dict) -> None:
    ckpt["classes"] = 10
    ckpt["model"]["classifier.weight"] = ckpt["model"]["classifier.weight"][:10]
    ckpt["model"]["classifier.bias"] = ckpt["model"]["classifier.bias"][:10]


RESUME_HINT = "(a resumed run keeps its config; only --epochs may change)"

CASES = [
    # options
    Case("unknown-preset", lambda e: new_run(e, "--preset", "huge"),
         lambda e: "--preset: expected one of paper, small, large, found 'huge'", nothing_written),
    Case("unknown-variant", lambda e: new_run(e, "--variant", "nope"),
         lambda e: f"--variant: expected one of {', '.join([*VARIANTS, 'bilstm'])}, found 'nope'", nothing_written),
    Case("negative-epochs", lambda e: new_run(e, "--epochs", -1),
         lambda e: "--epochs: expected a positive integer, found -1", nothing_written),
    Case("zero-batch-size", lambda e: new_run(e, "--batch-size", 0),
         lambda e: "--batch-size: expected a positive integer, found 0", nothing_written),
    Case("zero-lr", lambda e: new_run(e, "--lr", 0),
         lambda e: "--lr: expected a positive number, found 0.0", nothing_written),
    Case("dropout-above-one", lambda e: new_run(e, "--dropout", 1.5),
         lambda e: "--dropout: expected a probability in [0, 1), found 1.5", nothing_written),
    Case("epochs-not-a-number", lambda e: new_run(e, "--epochs", "ten"),
         lambda e: "Invalid value for '--epochs': 'ten' is not a valid integer. (see avel-dgl train --help)",
         nothing_written),
    Case("neither-out-nor-resume", lambda e: ["train", "--data", e.data],
         lambda e: "train: expected --out RUN_DIR for a new run, or --resume RUN_DIR to continue one"),
    # the output folder
    Case("out-not-creatable", lambda e: (e.out.joinpath("file").write_text("x"),
                                         new_run(e, out=e.out / "file" / "run"))[1],
         lambda e: f"--out: cannot create {e.out}/file/run: {e.out}/file is a file"),
    Case("out-is-a-file", lambda e: (e.run.write_text("x"), new_run(e))[1],
         lambda e: f"--out: {e.run} is a file, expected a folder"),
    Case("existing-run-without-resume-or-overwrite", lambda e: (e.copy_run(), new_run(e))[1],
         lambda e: f"--out: {e.run} already holds a run; continue it with --resume {e.run}, replace it with "
                   f"--overwrite, or choose another folder", unchanged_run),
    Case("overwrite-a-folder-that-is-not-a-run",
         lambda e: (e.run.mkdir(), (e.run / "notes.txt").write_text("mine"), new_run(e, "--overwrite"))[2],
         lambda e: f"--out: {e.run} is not empty and holds no avel-dgl run (no config.json); choose a new or empty folder",
         lambda e: holds((e.run / "notes.txt").read_text() == "mine")),
    # resuming
    Case("resume-and-out", lambda e: ["train", "--resume", e.copy_run(), "--out", e.out / "other"],
         lambda e: "--resume: continues a run in its own folder, do not also pass --out", unchanged_run),
    Case("resume-and-overwrite", lambda e: ["train", "--resume", e.copy_run(), "--overwrite"],
         lambda e: "--overwrite: cannot be combined with --resume (it would delete the run)", unchanged_run),
    Case("resume-missing-folder", lambda e: ["train", "--resume", e.out / "nowhere"],
         lambda e: f"--resume: {e.out}/nowhere not found"),
    Case("resume-folder-without-checkpoint", lambda e: (e.run.mkdir(), ["train", "--resume", e.run])[1],
         lambda e: f"--resume: {e.run} holds no last.pt, nothing to resume (start again with --out {e.run} "
                   f"--overwrite)"),
    Case("resume-corrupt-checkpoint",
         lambda e: (e.copy_run(), (e.run / "last.pt").write_bytes(b"\x00garbage" * 100), ["train", "--resume", e.run])[2],
         lambda e: f"{e.run}/last.pt: not a readable checkpoint, the file is truncated or corrupt (no complete zip archive)"),
    Case("resume-empty-checkpoint",
         lambda e: (e.copy_run(), (e.run / "last.pt").write_bytes(b""), ["train", "--resume", e.run])[2],
         lambda e: f"{e.run}/last.pt: not a readable checkpoint, the file is empty (0 bytes)"),
    Case("resume-truncated-checkpoint",
         lambda e: (e.copy_run(), (e.run / "last.pt").write_bytes(_half(e.tiny_run / "last.pt")),
                    ["train", "--resume", e.run])[2],
         lambda e: f"{e.run}/last.pt: not a readable checkpoint, the file is truncated or corrupt (no complete zip archive)"),
    Case("resume-checkpoint-of-another-architecture",
         lambda e: (e.copy_run(), e.edit_config_json(**{"model.width": 32}), ["train", "--resume", e.run])[2],
         lambda e: f"{e.run}/last.pt: made with model.width=16, but {e.run}/config.json has model.width=32 "
                   f"(a checkpoint of another run?)"),
    Case("resume-checkpoint-of-another-preset",
         lambda e: (e.copy_run(), e.edit_config_json(preset="paper"), ["train", "--resume", e.run])[2],
         lambda e: f"{e.run}/last.pt: made with preset=small, but {e.run}/config.json has preset=paper "
                   f"(a checkpoint of another run?)"),
    Case("resume-with-another-width", lambda e: ["train", "--resume", e.copy_run(), "--width", 64],
         lambda e: f"--resume: the run in {e.run} has model.width=16, found 64 on the command line {RESUME_HINT}",
         unchanged_run),
    Case("resume-with-another-preset", lambda e: ["train", "--resume", e.copy_run(), "--preset", "paper"],
         lambda e: f"--resume: the run in {e.run} has preset=small, found paper on the command line {RESUME_HINT}",
         unchanged_run),
    Case("resume-on-other-data", lambda e: (e.copy_run(), e.bad_data(), ["train", "--resume", e.run, "--data", e.data])[2],
         lambda e: f"--data: the train split in {e.data} differs from the one the run in {e.run} was trained on "
                   f"(different rows, features or labels)", unchanged_run),
    Case("resume-with-fewer-epochs", lambda e: ["train", "--resume", e.copy_run(), "--epochs", 1],
         lambda e: f"--epochs: the run in {e.run} has already trained 2 epochs, found 1", unchanged_run),
    # checkpoints given to evaluate
    Case("checkpoint-with-another-class-count", lambda e: eval_checkpoint(e, ten_classes),
         lambda e: f"{e.tmp}/other.pt: checkpoint was made for 10 classes, expected 29 (28 AVE events + background)"),
    Case("checkpoint-weights-not-fitting-its-config",
         lambda e: eval_checkpoint(e, lambda c: c["config"]["model"].update(width=32)),
         lambda e: f"{e.tmp}/other.pt: weights do not fit the 'dpnet' network of its config: tensor "
                   f"'blocks.0.rgct.layer.layer.query.audio.weight' expected shape (3, 512, 32), found (3, 512, 16)"),
    Case("checkpoint-with-damaged-bytes", lambda e: damaged_checkpoint(e),
         lambda e: f"{e.tmp}/damaged.pt: not a readable checkpoint, the file is corrupt (record "
                   f"'{e.damaged_record}' fails its checksum)"),
    Case("checkpoint-missing",
         lambda e: ["evaluate", "--checkpoint", e.out / "none.pt", "--data", e.data],
         lambda e: f"{e.out}/none.pt: checkpoint not found"),
    Case("evaluate-out-not-writable",
         lambda e: (e.out.joinpath("file").write_text("x"),
                    ["evaluate", "--checkpoint", e.tiny_run / "best.pt", "--data", e.data,
                     "--out", e.out / "file" / "eval"])[1],
         lambda e: f"--out: expected a stem for STEM.json and STEM.csv in an existing folder, found a file at "
                   f"{e.out}/file"),
    # faults during training
    Case("disk-full-on-checkpoint-write", lambda e: (disk_full_at_last_pt(e, 2), new_run(e))[1],
         lambda e: full_message(e.run / "last.pt", "the previous version, if any, is intact"),
         lambda e: holds(checkpoint.read_checkpoint(e.run / "last.pt")["epoch"] == 1), writes=True),
    Case("disk-full-in-torch-save", lambda e: (disk_full_at_last_pt(e, 2, as_torch=True), new_run(e))[1],
         lambda e: full_message(e.run / "last.pt", "the previous version, if any, is intact"),
         lambda e: holds(checkpoint.read_checkpoint(e.run / "last.pt")["epoch"] == 1), writes=True),
    Case("nan-loss", lambda e: (nan_loss_at(e, 3), new_run(e))[1],
         lambda e: f"epoch 2 step 1: training loss is nan; stopped. The last good state is in {e.run}/last.pt "
                   f"(epoch 1) and best.pt (epoch 1); look for NaN or huge input features, or try a lower --lr",
         kept_epoch(last=1, best=1), writes=True),
    Case("weights-become-nan", lambda e: (nan_weights_after_step(e, 4), new_run(e))[1],
         lambda e: f"epoch 2: weights became NaN or Inf; stopped. The last good state is in {e.run}/last.pt "
                   f"(epoch 1) and best.pt (epoch 1); look for NaN or huge input features, or try a lower --lr",
         kept_epoch(last=1, best=1), writes=True),
    # data files (the messages are data/ave.py's checks; the point here: train stops before writing)
    Case("data-folder-missing", lambda e: (setattr(e, "data", e.out / "nodata"), new_run(e))[1],
         lambda e: f"{e.out}/nodata/{AUDIO_FILE}: file not found (expected an HDF5 file with key 'avadataset' "
                   f"of shape (N, 10, 128))", nothing_written),
    Case("data-file-missing", lambda e: (e.bad_data("missing_file"), new_run(e))[1],
         lambda e: f"{e.data}/{LABELS_FILE}: file not found (expected an HDF5 file with key 'avadataset' of shape "
                   f"(N, 10, 29))", nothing_written),
    Case("data-file-not-hdf5", lambda e: (e.bad_data("not_hdf5"), new_run(e))[1],
         lambda e: f"{e.data}/{LABELS_FILE}: expected an HDF5 file with key 'avadataset', found an unreadable file "
                   f"(Unable to synchronously open file (file signature not found))", nothing_written),
    Case("data-file-truncated", lambda e: (truncated_labels(e), new_run(e))[1],
         lambda e: f"{e.data}/{LABELS_FILE}: expected an HDF5 file with key 'avadataset', found an unreadable file "
                   f"(Unable to synchronously open file (truncated file: eof = {e.labels_size // 2}, "
                   f"sblock->base_addr = 0, stored_eof = {e.labels_size}))", nothing_written),
    Case("data-key-missing", lambda e: (e.bad_data("missing_key"), new_run(e))[1],
         lambda e: f"{e.data}/mil_labels.h5: expected key 'avadataset' with shape (N, 29), found keys ['labels']",
         nothing_written),
    Case("labels-wrong-shape", lambda e: (e.bad_data("wrong_shape"), new_run(e))[1],
         lambda e: f"{e.data}/{LABELS_FILE}: key 'avadataset': expected shape (N, 10, 29), found (6, 10, 28)",
         nothing_written),
    Case("visual-wrong-shape", lambda e: (e.bad_data("wrong_visual_shape"), new_run(e))[1],
         lambda e: f"{e.data}/{VISUAL_FILE}: key 'avadataset': expected shape (N, 10, 7, 7, 512), "
                   f"found (6, 10, 7, 7, 256)", nothing_written),
    Case("features-wrong-dtype", lambda e: (e.bad_data("int_features"), new_run(e))[1],
         lambda e: f"{e.data}/{AUDIO_FILE}: key 'avadataset': expected dtype float32 or float64, found int32",
         nothing_written),
    Case("row-counts-disagree", lambda e: (e.bad_data("count_mismatch"), new_run(e))[1],
         lambda e: f"{e.data}/mil_labels.h5: key 'avadataset': expected 6 rows (as in {AUDIO_FILE}), found 5",
         nothing_written),
    Case("nan-features", lambda e: (e.bad_data("nan_audio"), new_run(e))[1],
         lambda e: f"{e.data}/{AUDIO_FILE}: key 'avadataset': expected finite values, found NaN at row 3, segment 3",
         nothing_written),
    Case("inf-visual-features", lambda e: (e.bad_data("inf_visual"), new_run(e))[1],
         lambda e: f"{e.data}/{VISUAL_FILE}: key 'avadataset': expected finite values, found Inf at row 3, segment 4",
         nothing_written),
    Case("order-out-of-range", lambda e: (e.bad_data("order_out_of_range"), new_run(e))[1],
         lambda e: f"{e.data}/{ORDER_FILES['test']}: key 'order': expected row indices in [0, 6), found 9 at "
                   f"position 1", nothing_written),
    Case("orders-overlap", lambda e: (e.bad_data("overlap"), new_run(e))[1],
         lambda e: f"{e.data}/{ORDER_FILES['test']}: key 'order': expected no rows shared with train_order.h5, "
                   f"found 1 (first: row 2)", nothing_written),
    Case("empty-split", lambda e: (e.bad_data("empty_split"), new_run(e))[1],
         lambda e: f"{e.data}/{ORDER_FILES['val']}: key 'order': expected at least one row index, found an empty "
                   f"split", nothing_written),
    Case("labels-not-one-hot", lambda e: (e.bad_data("label_all_zero"), new_run(e))[1],
         lambda e: f"{e.data}/{LABELS_FILE}: key 'avadataset': expected one-hot rows with one class set, found an "
                   f"all-zero row at row 3, segment 2", nothing_written),
    Case("wsel-extras-not-background", lambda e: (e.bad_data("noisy_not_background"), new_run(e, "--task", "wsel"))[1],
         lambda e: f"{e.data}/labels_noisy.h5: key 'avadataset': expected background (class 28) in every row, "
                   f"found class 3 at row 1", nothing_written),
    Case("huge-features-give-nan-loss", lambda e: (huge_audio(e), new_run(e, "--input-norm", "none"))[1],
         lambda e: f"epoch 1 step 1: training loss is nan; stopped. The last good state is in {e.run}/last.pt "
                   f"(epoch 0); look for NaN or huge input features, or try a lower --lr",
         lambda e: holds(checkpoint.read_checkpoint(e.run / "last.pt")["epoch"] == 0), writes=True),
]



# ---- users' data, outputs and the one convention ------------------------------------------------

def synthetic(env: Env, *extra_files: str) -> Path:
    """A small make-synthetic folder in the output area, plus the named files of the user's."""
    folder = make_synthetic(env.out / "syn", videos=4, seed=0, visual_dtype="float32")
    for name in extra_files:
        (folder / name).write_text("the user's own notes")
    return folder


def make_synthetic_args(folder: Path, *extra) -> list:
    return ["make-synthetic", "--out", folder, "--videos", 4, "--visual-dtype", "float32", "--quiet", *extra]


def nan_in(env: Env, name: str, split: str | None) -> Path:
    """Bad data whose only NaN is in a row of `split` (None: the noisy videos' file)."""
    arrays = ave_arrays()
    row = 1 if split is None else int(arrays[ORDER_FILES[split]][0])
    arrays[name][row, 3, 5] = np.nan
    env.nan_row = row
    return env.bad_data(arrays=arrays)


def without(env: Env, name: str) -> Path:
    arrays = ave_arrays()
    arrays[name] = None
    return env.bad_data(arrays=arrays)


def read_only_data(env: Env) -> Path:
    """A copy of the good data in a folder this process may not write (simulated: the tests run
    as root, whom permissions do not stop), and a user cache folder in the case's area."""
    data = env.bad_data()
    env.monkeypatch.setattr(cache, "_writable", lambda folder: data not in (folder, *folder.parents))
    env.monkeypatch.setenv("XDG_CACHE_HOME", str(env.out / "xdg"))
    env.monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    env.data_before = snapshot(data)
    return data


def data_untouched_and_cached(env: Env) -> None:
    assert snapshot(env.data) == env.data_before  # nothing written into the data folder
    assert list((env.out / "xdg" / "avel-dgl").glob("pooled_visual_feature_*.h5"))


def read_only_note(env: Env) -> str:
    return (f"{env.data}: read-only data folder; its pooled features and sub-event database are cached in "
            f"{env.out}/xdg/avel-dgl (choose with --cache-dir or {cache.CACHE_ENV})")


def multi_label(env: Env) -> Path:
    """Bad data with two classes in one segment of a validation row (not a training row)."""
    arrays = ave_arrays()
    env.multi_row = int(arrays[ORDER_FILES["val"]][0])
    arrays[LABELS_FILE][env.multi_row, 0, 5] = 1
    arrays[LABELS_FILE][env.multi_row, 0, 28] = 1
    return env.bad_data(arrays=arrays)


def predict_args(env: Env, out, *extra) -> list:
    return ["predict", "--checkpoint", env.tiny_run, "--data", env.data, "--out", out, "--quiet", *extra]


def fam_args(env: Env, out, *extra) -> list:
    return ["fam", "--checkpoint", env.tiny_run, "--data", env.data, "--video", 3, "--out", out, *extra]


def evaluate_args(env: Env, out, *extra) -> list:
    return ["evaluate", "--checkpoint", env.tiny_run, "--data", env.data, "--out", out, *extra]


def existing(path: Path) -> Path:
    path.write_text("the user's earlier output")
    return path


def a_report(env: Env, *extra_files: str) -> Path:
    """A run folder with an earlier report (and the user's files in it)."""
    run = env.copy_run()
    (run / "report").mkdir(exist_ok=True)
    (run / "report" / "report.html").write_text("<p>earlier</p>")
    for name in extra_files:
        (run / "report" / name).write_text("the user's own notes")
    return run


UNWRITABLE = Path("/sys")  # creating a file there fails, also for root



CASES += [
    # users' data: make-synthetic never replaces without --overwrite, never deletes a user's file
    Case("make-synthetic-over-an-existing-folder", lambda e: make_synthetic_args(synthetic(e)),
         lambda e: f"--out: {e.out}/syn already holds a make-synthetic folder; replace it with --overwrite, "
                   f"or choose another folder"),
    Case("make-synthetic-overwrite-with-a-users-file",
         lambda e: make_synthetic_args(synthetic(e, "my_notes.txt"), "--overwrite"),
         lambda e: f"--overwrite: {e.out}/syn holds my_notes.txt, which avel-dgl did not write; move it away "
                   f"(--overwrite deletes only a make-synthetic folder's own files) or choose another folder"),
    Case("train-overwrite-of-a-run-with-a-users-file",
         lambda e: (e.copy_run(), existing(e.run / "notes.txt"), new_run(e, "--overwrite"))[2],
         lambda e: f"--overwrite: {e.run} holds notes.txt, which avel-dgl did not write; move it away "
                   f"(--overwrite deletes only a run's own files) or choose another folder"),
    # train validates every row it will ever read before the first step
    Case("nan-in-a-test-row", lambda e: (nan_in(e, AUDIO_FILE, "test"), new_run(e))[1],
         lambda e: f"{e.data}/{AUDIO_FILE}: key 'avadataset': expected finite values, found NaN at row "
                   f"{e.nan_row}, segment 3", nothing_written),
    Case("nan-in-a-validation-row", lambda e: (nan_in(e, AUDIO_FILE, "val"), new_run(e))[1],
         lambda e: f"{e.data}/{AUDIO_FILE}: key 'avadataset': expected finite values, found NaN at row "
                   f"{e.nan_row}, segment 3", nothing_written),
    Case("nan-in-a-noisy-video", lambda e: (nan_in(e, NOISY_AUDIO_FILE, None), new_run(e, "--task", "wsel"))[1],
         lambda e: f"{e.data}/{NOISY_AUDIO_FILE}: key 'avadataset': expected finite values, found NaN at row 1, "
                   f"segment 3", nothing_written),
    Case("evaluate-c-ave-without-right-labels",
         lambda e: (without(e, RIGHT_LABELS_FILE), evaluate_args(e, e.out / "eval", "--split", "c-ave"))[1],
         lambda e: f"--split: c-ave is not available ({RIGHT_LABELS_FILE} is absent from {e.data}); score o-ave "
                   f"instead"),
    # a read-only data folder works: derived files go to the user cache folder, said once
    Case("check-data-on-a-read-only-folder", lambda e: ["check-data", read_only_data(e)], read_only_note,
         data_untouched_and_cached, code=0, writes=True, prefix="avel-dgl: warning: "),
    Case("train-on-a-read-only-folder", lambda e: (read_only_data(e), new_run(e))[1], read_only_note,
         data_untouched_and_cached, code=0, writes=True, prefix="avel-dgl: warning: "),
    Case("predict-on-a-read-only-folder", lambda e: (read_only_data(e), predict_args(e, e.out / "p.json"))[1],
         read_only_note, data_untouched_and_cached, code=0, writes=True, prefix="avel-dgl: warning: "),
    # outputs in missing, unwritable or wrong places: one line, before any work
    Case("predict-out-in-a-missing-folder", lambda e: predict_args(e, e.out / "nowhere" / "p.json"),
         lambda e: f"--out: expected a file name ending in .json or .csv in an existing folder, found no such "
                   f"folder at {e.out}/nowhere"),
    Case("predict-out-unwritable", lambda e: predict_args(e, UNWRITABLE / "p.json"),
         lambda e: f"--out: cannot write in {UNWRITABLE} (Permission denied)"),
    Case("predict-out-is-a-folder", lambda e: predict_args(e, e.out),
         lambda e: f"--out: {e.out} is a folder, expected a file name ending in .json or .csv"),
    Case("predict-out-not-json-or-csv", lambda e: predict_args(e, e.out / "p.txt"),
         lambda e: "--out: expected a file name ending in .json or .csv, found 'p.txt'"),
    Case("predict-csv-whose-segments-file-is-a-folder",
         lambda e: ((e.out / "p_segments.csv").mkdir(), predict_args(e, e.out / "p.csv"))[1],
         lambda e: f"--out: {e.out}/p_segments.csv is a folder, expected a file (the per-segment table)",
         lambda e: holds(not (e.out / "p.csv").exists())),
    Case("predict-out-exists", lambda e: predict_args(e, existing(e.out / "p.json")),
         lambda e: f"--out: {e.out}/p.json exists; replace it with --overwrite, or choose another name"),
    Case("predict-segments-file-exists",
         lambda e: (existing(e.out / "p_segments.csv"), predict_args(e, e.out / "p.csv"))[1],
         lambda e: f"--out: {e.out}/p_segments.csv exists; replace it with --overwrite, or choose another name"),
    Case("fam-out-in-a-missing-folder", lambda e: fam_args(e, e.out / "nowhere" / "f.png"),
         lambda e: f"--out: expected a file name ending in .png in an existing folder, found no such folder at "
                   f"{e.out}/nowhere"),
    Case("fam-out-unwritable", lambda e: fam_args(e, UNWRITABLE / "f.png"),
         lambda e: f"--out: cannot write in {UNWRITABLE} (Permission denied)"),
    Case("fam-out-is-a-folder", lambda e: fam_args(e, e.out),
         lambda e: f"--out: {e.out} is a folder, expected a file name ending in .png"),
    Case("fam-out-exists", lambda e: fam_args(e, existing(e.out / "f.png")),
         lambda e: f"--out: {e.out}/f.png exists; replace it with --overwrite, or choose another name"),
    Case("evaluate-out-is-a-folder", lambda e: evaluate_args(e, e.out),
         lambda e: f"--out: {e.out} is a folder, expected a stem for STEM.json and STEM.csv (e.g. {e.out}/eval)"),
    Case("evaluate-out-exists", lambda e: evaluate_args(e, (existing(e.out / "eval.csv"), e.out / "eval")[1]),
         lambda e: f"--out: {e.out}/eval.csv exists; replace it with --overwrite, or choose another name"),
    Case("evaluate-out-unwritable", lambda e: evaluate_args(e, UNWRITABLE / "eval"),
         lambda e: f"--out: cannot write in {UNWRITABLE} (Permission denied)"),
    Case("report-over-an-earlier-report", lambda e: ["report", a_report(e), "--quiet"],
         lambda e: f"--out: {e.run}/report already holds a report; replace it with --overwrite, or choose "
                   f"another folder"),
    Case("report-overwrite-with-a-users-file", lambda e: ["report", a_report(e, "notes.txt"), "--overwrite"],
         lambda e: f"--overwrite: {e.run}/report holds notes.txt, which avel-dgl did not write; move it away "
                   f"(--overwrite deletes only a report's own files) or choose another folder"),
    Case("report-out-unwritable", lambda e: ["report", e.copy_run(), "--out", UNWRITABLE / "report"],
         lambda e: f"--out: cannot write in {UNWRITABLE} (Permission denied)"),
    # --overwrite replaces only a file avel-dgl wrote (it carries avel-dgl's mark)
    Case("build-subevents-overwrite-of-a-users-file",
         lambda e: ["build-subevents", "--data", e.data, "--out", existing(e.out / "afile2.txt"), "--overwrite"],
         lambda e: f"--overwrite: {e.out}/afile2.txt was not written by avel-dgl (it has no avel-dgl mark), so it "
                   f"is not replaced; move it away or choose another name"),
    Case("predict-overwrite-of-a-users-file", lambda e: predict_args(e, existing(e.out / "mine.json"), "--overwrite"),
         lambda e: f"--overwrite: {e.out}/mine.json was not written by avel-dgl (it has no avel-dgl mark), so it "
                   f"is not replaced; move it away or choose another name"),
    Case("evaluate-overwrite-of-a-users-file",
         lambda e: evaluate_args(e, (existing(e.out / "eval.csv"), e.out / "eval")[1], "--overwrite"),
         lambda e: f"--overwrite: {e.out}/eval.csv was not written by avel-dgl (it has no avel-dgl mark), so it "
                   f"is not replaced; move it away or choose another name"),
    Case("fam-overwrite-of-a-users-file", lambda e: fam_args(e, existing(e.out / "f.png"), "--overwrite"),
         lambda e: f"--overwrite: {e.out}/f.png was not written by avel-dgl (it has no avel-dgl mark), so it "
                   f"is not replaced; move it away or choose another name"),
    # a full disk: one line naming the file and the device; no temporary file; earlier outputs intact
    Case("disk-full-on-predict-json",
         lambda e: (disk_full_for_outputs(e), predict_args(e, ours(e.out / "p.json"), "--overwrite"))[1],
         lambda e: full_message(e.out / "p.json", "no output was changed")),
    Case("disk-full-on-predict-csv", lambda e: (disk_full_for_outputs(e), predict_args(e, e.out / "p.csv"))[1],
         lambda e: full_message(e.out / "p.csv", "no output was changed"),
         lambda e: holds(not (e.out / "p_segments.csv").exists())),
    Case("disk-full-on-evaluate", lambda e: (disk_full_for_outputs(e, 100), evaluate_args(e, e.out / "eval"))[1],
         lambda e: full_message(e.out / "eval.json", "no output was changed")),
    Case("build-subevents-out-exists",
         lambda e: ["build-subevents", "--data", e.data, "--out", existing(e.out / "db.h5")],
         lambda e: f"--out: {e.out}/db.h5 exists; replace it with --overwrite, or choose another name"),
    # options that meant two things, duplicates, folders for files
    Case("evaluate-split-given-a-data-split",
         lambda e: ["evaluate", "--split", "test", "--checkpoint", e.tiny_run, "--data", e.data],
         lambda e: "--split: expected o-ave (labels.h5) or c-ave (right_labels.h5), found 'test' (evaluate always "
                   "scores the test split; --split chooses its labels. To predict on another split use "
                   "`avel-dgl predict --subset`)"),
    Case("predict-repeated-row", lambda e: predict_args(e, e.out / "p.json", "--subset", "3,3"),
         lambda e: "--subset: expected each row once, found row 3 2 times in '3,3'"),
    Case("predict-subset-and-old-split", lambda e: predict_args(e, e.out / "p.json", "--subset", "3", "--split", "4"),
         lambda e: "--split: renamed --subset; give only --subset"),
    Case("checkpoint-folder-without-best-pt",
         lambda e: ["evaluate", "--checkpoint", e.out, "--data", e.data, "--out", e.out / "eval"],
         lambda e: f"--checkpoint: {e.out} is a folder without best.pt, expected a checkpoint file (best.pt, "
                   f"last.pt) or a run folder"),
    Case("ablate-dry-run-on-an-empty-folder",
         lambda e: ["ablate", "--data", (e.tmp / "empty").mkdir() or e.tmp / "empty", "--out", e.out / "grid",
                    "--dry-run"],
         lambda e: f"{e.tmp}/empty/{AUDIO_FILE}: file not found (expected an HDF5 file with key 'avadataset' of "
                   f"shape (N, 10, 128))"),
    Case("build-subevents-multi-label-row-outside-train",
         lambda e: (multi_label(e), ["build-subevents", "--data", e.data, "--out", e.out / "db.h5"])[1],
         lambda e: f"{e.data}/{LABELS_FILE}: key 'avadataset': 1 row(s) set more than one class (rows "
                   f"{e.multi_row}); such segments take the lowest set class index",
         code=0, writes=True, prefix="avel-dgl: warning: "),
    # a folder where a file is expected, a file where a folder is, says so
    Case("predict-audio-is-a-folder",
         lambda e: ["predict", "--checkpoint", e.tiny_run, "--audio", e.out, "--visual", e.out,
                    "--out", e.out / "p.json"],
         lambda e: f"{e.out}: is a folder, expected an HDF5 file with key 'avadataset' of shape (N, 10, 128)"),
    Case("data-is-a-file", lambda e: ["evaluate", "--checkpoint", e.tiny_run, "--data", e.ave_dir / AUDIO_FILE,
                                      "--out", e.out / "eval"],
         lambda e: f"{e.ave_dir / AUDIO_FILE}: is a file, expected a data folder holding {AUDIO_FILE}"),
    Case("check-data-on-a-file", lambda e: ["check-data", e.ave_dir / AUDIO_FILE],
         lambda e: f"{e.ave_dir / AUDIO_FILE}: expected a data folder, found a file"),
    Case("subevents-is-a-folder", lambda e: new_run(e, "--replicate", "--subevents", e.out),
         lambda e: f"{e.out}: is a folder, expected a sub-event database file (from `avel-dgl build-subevents`)",
         nothing_written),
    Case("annotations-is-a-folder",
         lambda e: make_synthetic_args(e.out / "syn", "--annotations", e.out),
         lambda e: f"--annotations {e.out}: is a folder, expected a text file of lines "
                   f"Category&VideoID&Quality&StartTime&EndTime"),
    # huge numbers and full disks are refused before any work, with both figures
    Case("make-synthetic-a-billion-videos",
         lambda e: (some_free_bytes(e), ["make-synthetic", "--out", e.out / "syn", "--videos", 10**9, "--quiet"])[1],
         lambda e: f"--out {e.out}/syn: 1000000000 videos needs about 1.9 PiB, but {outputs.device_of(e.out)} has "
                   f"10.0 GiB free; free some space or choose another --out"),
    Case("cache-build-on-a-full-disk",
         lambda e: (no_cache_env(e), e.bad_data(), some_free_bytes(e, 1000), ["check-data", e.data])[3],
         lambda e: f"{e.data}/.avel_cache/pooled_visual_feature.h5: the pooled cache of {e.data}/{VISUAL_FILE} "
                   f"needs about 120.0 KiB, but {outputs.device_of(e.data / '.avel_cache')} has 1000 B free; free "
                   f"some space or choose another with --cache-dir or {cache.CACHE_ENV}"),
    # messages that said something else than what was wrong
    Case("make-synthetic-out-empty", lambda e: ["make-synthetic", "--out", "", "--videos", 4, "--quiet"],
         lambda e: "--out: expected a folder to create, found an empty name"),
    Case("cache-dir-is-a-file",
         lambda e: (no_cache_env(e), ["check-data", e.bad_data(), "--cache-dir", existing(e.out / "afile.txt")])[1],
         lambda e: f"{e.out}/afile.txt: expected a folder for the pooled visual cache, found a file; choose another "
                   f"with --cache-dir or {cache.CACHE_ENV}"),
    Case("group-where-an-array-is-expected", lambda e: ["check-data", group_for_labels(e)],
         lambda e: f"{e.data}/{LABELS_FILE}: expected key 'avadataset' to be an array of shape (N, 10, 29), found "
                   f"a group (a folder of keys: ['inner'])"),
    Case("checkpoint-is-an-hdf5-file",
         lambda e: ["evaluate", "--checkpoint", e.ave_dir / LABELS_FILE, "--data", e.data, "--out", e.out / "eval"],
         lambda e: f"{e.ave_dir / LABELS_FILE}: is an HDF5 file, not a checkpoint (expected best.pt or last.pt of a "
                   f"run of `avel-dgl train`)"),
    Case("checkpoint-is-a-png-image",
         lambda e: ["evaluate", "--checkpoint", png_file(e), "--data", e.data, "--out", e.out / "eval"],
         lambda e: f"{e.tmp}/picture.png: is a PNG image, not a checkpoint (expected best.pt or last.pt of a run of "
                   f"`avel-dgl train`)"),
    Case("fam-on-a-tcn-only-network", lambda e: fam_args(e, e.out / "f.png", "--checkpoint", tcn_checkpoint(e)),
         lambda e: "checkpoint: feature activation maps need a network whose first layer is an RGCT on the 512-d "
                   "input features (the paper's DPNet), found a network whose first layer is a TCN"),
    Case("resume-a-folder-that-is-not-a-run",
         lambda e: (e.run.mkdir(), existing(e.run / "notes.txt"), ["train", "--resume", e.run])[2],
         lambda e: f"--resume: {e.run} holds no avel-dgl run (no last.pt or config.json); give the folder of a run "
                   f"(train --out RUN_DIR made it)"),
    Case("resume-with-moved-data", lambda e: ["train", "--resume", moved_data_in_last_pt(e)],
         lambda e: f"--resume: the run's data folder {e.tmp}/moved (recorded in {e.run}/last.pt) is not found; if "
                   f"it moved, give its new place with --data"),
    Case("report-with-moved-data", lambda e: ["report", moved_data_in_results(e), "--quiet"],
         lambda e: f"--data: the run's data folder {e.tmp}/moved (recorded in {e.run}/results.json) is not found; if "
                   f"it moved, give its new place with --data DIR", lambda e: holds(not (e.run / "report").exists())),
    # click's own usage errors in the one format
    Case("unknown-option-of-a-command", lambda e: ["train", "--nope"],
         lambda e: "No such option '--nope'. (Did you mean one of: '--norm', '--nproc'?) (see avel-dgl train --help)"),
    Case("unknown-option-of-the-group", lambda e: ["--nope", "train"],
         lambda e: "No such option '--nope'. (see avel-dgl --help)"),
    Case("unknown-command", lambda e: ["trian"],
         lambda e: "No such command 'trian'. Did you mean 'train'? (see avel-dgl --help)"),
    Case("missing-required-option", lambda e: ["evaluate", "--data", e.data],
         lambda e: "Missing option '--checkpoint'. (see avel-dgl evaluate --help)"),
]



def snapshot(folder: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()}


def derived(path: Path) -> bool:
    """The pooled cache that reading a data folder builds (data/cache.py): not a user's file."""
    return ".avel_cache" in path.parts


def assert_nothing_half_written(folder: Path, before: dict) -> None:
    after = snapshot(folder)
    assert not [p for p in after if p.name.endswith(".tmp")]
    for path in (p for p, stamp in after.items() if before.get(p) != stamp):
        if path.suffix == ".pt":
            checkpoint.read_checkpoint(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".csv":
            rows = list(csv.reader(path.open()))
            assert rows and all(len(r) == len(rows[0]) for r in rows), path


def test_the_table_has_at_least_twenty_distinct_cases():
    assert len({c.id for c in CASES}) == len(CASES) >= 20


def half_written(folder: Path, before: dict) -> str | None:
    try:
        assert_nothing_half_written(folder, before)
    except Exception as e:  # noqa: BLE001 (any failure to read a new file back is the finding)
        return f"{type(e).__name__}: {e}"
    return None


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_fault_gives_one_line_and_leaves_nothing_half_written(case, ave_dir, tiny_run, tmp_path, monkeypatch):
    env = Env(ave_dir, tiny_run, tmp_path, monkeypatch)
    args = case.args(env)
    before, area = snapshot(env.out), snapshot(env.tmp)
    result = invoke(args)
    # What the fault table in docs/RELIABILITY.md counts, recorded before the assertions.
    traceback = result.exception is not None and not isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    partial = half_written(env.out, before)
    after = {p: stamp for p, stamp in snapshot(env.tmp).items() if not derived(p)}
    lost = sorted(str(p) for p in area if p not in after and not derived(p))
    changed = sorted(str(p) for p, stamp in after.items() if area.get(p) != stamp)
    FAULT_TALLY.append({"case": case.id, "traceback": traceback, "partial": partial is not None, "lost": len(lost),
                        "one_line": len(lines) == 1 and lines[0].startswith("avel-dgl: ")})
    assert not traceback, result.exception
    assert result.stderr == f"{case.prefix}{case.message(env)}\n"
    assert result.exit_code == case.code
    assert partial is None, partial
    assert not lost, f"files deleted: {lost}"
    if not case.writes:
        assert not changed, f"files written or changed: {changed}"
    case.after(env)


def test_debug_shows_the_traceback_of_the_same_fault(ave_dir, tmp_path):
    from avel_dgl.errors import ConfigError

    result = invoke(["--debug", "train", "--data", ave_dir, "--out", tmp_path / "run", "--preset", "huge"])
    assert isinstance(result.exception, ConfigError)  # as the package raises it: keyed by field, not by flag
    assert str(result.exception) == "preset: expected one of paper, small, large, found 'huge'"
