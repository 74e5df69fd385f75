"""Checkpoints and run-folder files: atomic writes, and loading a model back with the config it
was trained with, refusing a checkpoint that does not fit (class count, weight shapes).

Every file a run writes goes through `write_atomic`. A checkpoint is a dict of tensors and plain
Python values (no pickled objects), read back with `torch.load(weights_only=True)`, so opening a
checkpoint from elsewhere cannot run code. Keys:

    version, config, classes, model, epoch, val_acc        every checkpoint (best.pt, last.pt)
    training                                               last.pt only: the resumable state
                                                           (see avel_dgl/train.py)
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable

import torch

from avel_dgl import __version__
from avel_dgl.config import Config
from avel_dgl.format import N_CLASSES
from avel_dgl.errors import AvelError

if TYPE_CHECKING:  # only a type here: importing it would load DGL for every atomic write
    from avel_dgl.runtime import Runtime


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` through a temporary file beside it: write, flush, fsync, rename, fsync the folder.

    A crash at any instant leaves either the previous file or the new one, never a truncated one
    (at worst a stale `<name>.tmp`, which nothing reads and the next write replaces). A failed
    write (a full disk, a vanished folder) removes the temporary file and raises an AvelError
    naming `path`; the previous file stays as it was.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):  # there may be no temporary file, or no folder for it
            tmp.unlink()
        raise AvelError(f"{path}: cannot write ({e.strerror or e}); the previous version, if any, is intact") from None
    # The rename lives in the folder's metadata: sync it too, or a power cut may undo it.
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_output(path: str | Path, overwrite: bool, option: str = "--out", kind: str = "a file") -> Path:
    """An output file about to be written: its folder exists and is writable, it is not a folder,
    and an existing file is replaced only with `overwrite` (one rule for every command). `kind`
    says what the option expects, for the messages."""
    path = Path(path)
    if path.is_dir():
        raise AvelError(f"{option}: {path} is a folder, expected {kind}")
    folder = path.parent
    if not folder.is_dir():
        found = "a file" if folder.exists() else "no such folder"
        raise AvelError(f"{option}: expected {kind} in an existing folder, found {found} at {folder}")
    try:  # a real probe: permissions, read-only mounts and root all answer the same way
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise AvelError(f"{option}: cannot write in {folder} ({e.strerror or e})") from None
    if path.exists() and not overwrite:
        raise AvelError(f"{option}: {path} exists; replace it with --overwrite, or choose another name")
    return path


def publish(pairs: list[tuple[Path, Path]]) -> None:
    """Rename finished temporary files over their targets, all or none: the outputs of one
    command appear together. A failed rename puts back every target as it was and raises an
    AvelError naming it (the temporary files are the caller's to remove)."""
    for _, target in pairs:  # a folder is never moved aside (nor deleted with the backups)
        if target.is_dir():
            raise AvelError(f"{target}: is a folder, expected a file; no output was changed")
    moved, backups = [], []
    try:
        for tmp, target in pairs:
            if target.exists():
                backup = target.with_name(f".{target.name}.previous")
                os.replace(target, backup)
                backups.append((backup, target))
            os.replace(tmp, target)
            moved.append(target)
    except OSError as e:
        for target in moved:
            with contextlib.suppress(OSError):
                target.unlink()
        for backup, target in backups:
            os.replace(backup, target)
        raise AvelError(f"{e.filename2 or e.filename}: cannot write ({e.strerror or e}); "
                        f"no output was changed") from None
    for backup, _ in backups:
        backup.unlink()


def write_texts(texts: dict[Path, str]) -> None:
    """Write several text files all or none (each to a temporary name, then `publish`); an error
    names the file it concerns."""
    tmps = {path: path.with_name(f".{path.name}.new") for path in texts}
    try:
        for path, text in texts.items():
            try:
                with open(tmps[path], "w", encoding="utf-8", newline="") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                raise AvelError(f"{path}: cannot write ({e.strerror or e}); no output was changed") from None
        publish([(tmp, path) for path, tmp in tmps.items()])
    finally:
        for tmp in tmps.values():
            with contextlib.suppress(OSError):
                tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text.encode()))


def save_atomic(obj: dict, path: str | Path) -> None:
    write_atomic(path, lambda f: torch.save(obj, f))


def save_checkpoint(path: Path, model: torch.nn.Module, config: Config, **meta) -> None:
    save_atomic({"version": __version__, "config": config.to_dict(), "classes": N_CLASSES,
                 "model": model.state_dict(), **meta}, path)


def resolve_checkpoint(path: str | Path) -> Path:
    """--checkpoint: a checkpoint file, or a run folder, which stands for its best.pt."""
    path = Path(path)
    if path.is_dir():
        if (path / "best.pt").is_file():
            return path / "best.pt"
        raise AvelError(f"--checkpoint: {path} is a folder without best.pt, expected a checkpoint file "
                        f"(best.pt, last.pt) or a run folder")
    return path


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict at `path`, or an AvelError saying why it cannot be one of ours."""
    path = Path(path)
    if not path.is_file():
        raise AvelError(f"{path}: checkpoint not found")
    # torch.save writes a zip archive: a truncated or overwritten file has no complete one, and
    # damaged bytes inside fail their record's CRC (which torch.load itself does not check).
    if not zipfile.is_zipfile(path):
        raise AvelError(f"{path}: not a readable checkpoint, the file is truncated or corrupt "
                        f"(no complete zip archive)")
    with zipfile.ZipFile(path) as archive:
        damaged = archive.testzip()
    if damaged is not None:
        raise AvelError(f"{path}: not a readable checkpoint, the file is corrupt (record '{damaged}' "
                        f"fails its checksum)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise AvelError(f"{path}: holds pickled Python objects besides tensors, which avel-dgl does not load "
                        f"(not an avel-dgl checkpoint?)") from None
    except Exception as e:  # torch raises many types for damaged archives
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise AvelError(f"{path}: not a readable checkpoint, the file is truncated or corrupt ({reason})") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
        raise AvelError(f"{path}: not an avel-dgl checkpoint (expected keys 'config' and 'model')")
    classes = ckpt.get("classes", N_CLASSES)
    if classes != N_CLASSES:
        raise AvelError(f"{path}: checkpoint was made for {classes} classes, expected {N_CLASSES} "
                        f"(28 AVE events + background)")
    return ckpt


def checkpoint_config(ckpt: dict, path: str | Path) -> Config:
    """The Config stored in a checkpoint read by `read_checkpoint`."""
    try:
        return Config.from_dict(ckpt["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise AvelError(f"{path}: its config does not fit this avel-dgl version ({e})") from None


def upgrade_weights(weights: dict, config: Config) -> dict:
    """Tensor names of checkpoints written before the DPBlock class (up to commit 1beb270), renamed
    to today's. Those networks held their backbone as `layers.j`, one entry per RGCT or TCN; a
    DPNet now holds `blocks.i` (a DPBlock's two layers are `blocks.i.rgct` and `blocks.i.tcn`, so
    old layers 2i and 2i + 1), and every other variant `blocks.j`. What sits below stays the same;
    the stem, gate and classifier keep their names. Today's weights pass unchanged."""
    renamed = {}
    for name, tensor in weights.items():
        if name.startswith("layers."):
            _, j, rest = name.split(".", 2)
            if config.model.variant == "dpnet":
                name = f"blocks.{int(j) // 2}.{('rgct', 'tcn')[int(j) % 2]}.{rest}"
            else:
                name = f"blocks.{j}.{rest}"
        renamed[name] = tensor
    return renamed


def load_weights(model: torch.nn.Module, weights: dict, path: str | Path, config: Config) -> None:
    """Load `weights` into `model` (renaming an older layout's tensors, `upgrade_weights`), naming
    the first tensor that is missing, extra or mis-shaped."""
    weights = upgrade_weights(weights, config)
    expected = model.state_dict()
    where = f"{path}: weights do not fit the '{config.model.variant}' network of its config"
    for name, tensor in expected.items():
        if name not in weights:
            raise AvelError(f"{where}: tensor '{name}' missing")
        if weights[name].shape != tensor.shape:
            raise AvelError(f"{where}: tensor '{name}' expected shape {tuple(tensor.shape)}, "
                            f"found {tuple(weights[name].shape)}")
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise AvelError(f"{where}: unexpected tensor '{extra[0]}' (and {len(extra) - 1} more)")
    model.load_state_dict(weights)


def load_model(path: str | Path, runtime: Runtime) -> tuple[torch.nn.Module, Config, dict]:
    """The model of a checkpoint, built from the config stored with it for `runtime` (its eq 12
    kernel, on its device), in eval mode."""
    from avel_dgl.nn.dpnet import build

    ckpt = read_checkpoint(path)
    config = checkpoint_config(ckpt, path)
    model = build(config, runtime.kernel)
    load_weights(model, ckpt["model"], path, config)
    model.to(runtime.device).eval()
    return model, config, ckpt
