"""The checkpoint format: saving one atomically, reading one back with the config it was trained
with, refusing a checkpoint that does not fit (class count, weight shapes). Building the model
it holds is `engine.load_model`'s: this module never imports the network (nor DGL).

Every file a run writes goes through `outputs.write_atomic`. A checkpoint is a dict of tensors and plain
Python values (no pickled objects), read back with `torch.load(weights_only=True)`, so opening a
checkpoint from elsewhere cannot run code. Keys:

    version, config, classes, model, epoch, val_acc        every checkpoint (best.pt, last.pt)
    training                                               last.pt only: the resumable state
                                                           (see avel_dgl/train.py)
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from avel_dgl import __version__
from avel_dgl.config import Config
from avel_dgl.format import N_CLASSES
from avel_dgl.errors import AvelError
from avel_dgl.outputs import TRUNCATED_ZIP, file_kind, write_atomic
from avel_dgl.run_folder import RunFolder


def save_atomic(obj: dict, path: str | Path) -> None:
    write_atomic(path, lambda f: torch.save(obj, f))


def save_checkpoint(path: Path, model: torch.nn.Module, config: Config, **meta) -> None:
    save_atomic({"version": __version__, "config": config.to_dict(), "classes": N_CLASSES,
                 "model": model.state_dict(), **meta}, path)


def resolve_checkpoint(path: str | Path) -> Path:
    """--checkpoint: a checkpoint file, or a run folder, which stands for its best.pt."""
    path = Path(path)
    if path.is_dir():
        if (best := RunFolder(path).best).is_file():
            return best
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
        kind = file_kind(path)
        if kind == "an empty file":  # a checkpoint whose write never began (it is no other kind of file)
            raise AvelError(f"{path}: not a readable checkpoint, the file is empty (0 bytes)")
        if kind not in (None, TRUNCATED_ZIP):
            raise AvelError(f"{path}: is {kind}, not a checkpoint (expected best.pt or last.pt of a run of "
                            f"`avel-dgl train`)")
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
