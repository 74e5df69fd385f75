"""Checkpoints: atomic writes, and loading a model back with the config it was trained with."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from avel_dgl import __version__
from avel_dgl.config import Config
from avel_dgl.errors import AvelError


def save_atomic(obj: dict, path: Path) -> None:
    """torch.save to a temporary file, fsync, then rename over `path`: a crash at any instant
    leaves either the old file or the new one, never a truncated checkpoint."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(path: Path, model: torch.nn.Module, config: Config, **meta) -> None:
    save_atomic({"version": __version__, "config": config.to_dict(), "model": model.state_dict(), **meta}, path)


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise AvelError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu")
    except Exception as e:  # torch raises many types for corrupt files
        raise AvelError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
        raise AvelError(f"{path}: not an avel-dgl checkpoint (expected keys 'config' and 'model')")
    return ckpt


def load_model(path: str | Path) -> tuple[torch.nn.Module, Config, dict]:
    """The model of a checkpoint, built from the config stored with it, in eval mode."""
    from avel_dgl.nn.dpnet import build

    ckpt = read_checkpoint(path)
    config = Config.from_dict(ckpt["config"])
    model = build(config)
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    if missing or unexpected:
        raise AvelError(f"{path}: weights do not fit the '{config.model.variant}' network of its config "
                        f"(missing {len(missing)} tensors, unexpected {len(unexpected)})")
    model.eval()
    return model, config, ckpt
