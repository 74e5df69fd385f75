"""The published weight files of the feature networks: where they come from, where they are
looked for, what they are (a digest, part of the feature cache's key), and the one-line errors
for a missing or unusable file.

A file is read from --weights-dir when given (offline machines; nothing is downloaded then).
Otherwise it is looked for in torch's hub cache (`torch.hub.get_dir()`, $TORCH_HOME) and, for
the Keras VGG19 files, in Keras's own cache (`$KERAS_HOME/models`, default `~/.keras/models`);
what is found nowhere is downloaded once into the hub cache. Every file that can be had neither
way is named in one message, with its URL and where to put it."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from avel_dgl.errors import AvelError
from avel_dgl.outputs import TRUNCATED_ZIP, file_kind


@dataclass(frozen=True)
class WeightFile:
    name: str  # file name, the same in the hub cache and in --weights-dir (the one downloaded)
    url: str
    cache_subdir: str  # under torch.hub.get_dir(), where torch's own loaders keep it
    hash_prefix: str | None = None  # sha256 prefix torch's loaders check, where the name carries one
    alternatives: tuple[str, ...] = ()  # other names of a file that serves as well (looked for first)
    keras: bool = False  # also looked for in Keras's cache

    def names(self) -> tuple[str, ...]:
        return (*self.alternatives, self.name)

    def described(self) -> str:
        """'NAME (from URL)', or several such joined by 'or', for the messages."""
        folder = self.url.rsplit("/", 1)[0]
        return " or ".join(f"{name} (from {folder}/{name})" for name in (self.name, *self.alternatives))


# VGGish from the TensorFlow release as torchaudio converted it (torchaudio's prototype bundle
# fetched the same file into the same place).
VGGISH = WeightFile("vggish.pt", "https://download.pytorch.org/torchaudio/models/vggish.pt", "torchaudio/models")
# VGG19 ImageNet weights of the Oxford VGG group as Keras distributes them. The AVE release loaded
# the file with the classifier ("with top", 548 MB); only its 16 convolutions are used, which the
# convolutional file ("notop", 80 MB, the one downloaded) holds as well: either serves.
KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
VGG19_KERAS = WeightFile("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
                         KERAS_URL + "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", "checkpoints",
                         alternatives=("vgg19_weights_tf_dim_ordering_tf_kernels.h5",), keras=True)
# torchvision's own VGG19 (trained separately: a different feature space; --visual-weights torchvision).
VGG19_TORCHVISION = WeightFile("vgg19-dcbb9e9d.pth", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
                               "checkpoints", "dcbb9e9d")


def hub_folder(weights: WeightFile) -> Path:
    return Path(torch.hub.get_dir()) / weights.cache_subdir


def keras_folder() -> Path:
    """Where Keras keeps the files it downloads."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def _folders(weights: WeightFile) -> list[Path]:
    return [hub_folder(weights)] + ([keras_folder()] if weights.keras else [])


def _find(weights: WeightFile, folders: list[Path]) -> Path | None:
    for folder in folders:
        for name in weights.names():
            if (folder / name).is_file():
                return folder / name
    return None


def locate(files: list[WeightFile], weights_dir: str | Path | None = None) -> list[Path]:
    """The local paths of `files`, downloading into torch's hub cache what is found nowhere (not
    with `weights_dir`). Every file that cannot be had is named in one AvelError, with its URL
    and where to put it."""
    if weights_dir is not None:
        paths = [_find(w, [Path(weights_dir)]) for w in files]
        missing = [w.described() for w, p in zip(files, paths) if p is None]
        if missing:
            raise AvelError(f"--weights-dir: {weights_dir} lacks {'; '.join(missing)}: download "
                            f"{'it' if len(missing) == 1 else 'them'} and put {'it' if len(missing) == 1 else 'them'} "
                            f"there")
        return paths
    paths, failed = [], []
    for weights in files:
        path = _find(weights, _folders(weights))
        if path is None:
            path = hub_folder(weights) / weights.name
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(weights.url, str(path), hash_prefix=weights.hash_prefix, progress=True)
            except Exception as e:  # no network, a proxy, a full disk, a hash mismatch: all end the same way
                reason = " ".join(str(e).split()) or type(e).__name__
                where = " or ".join(map(str, _folders(weights)))
                failed.append((f"{weights.described()} into {where}", reason))
        paths.append(path)
    if failed:
        listed = "; ".join(item for item, _ in failed)
        raise AvelError(f"weight files missing and not downloadable ({failed[0][1]}): put {listed}; or put "
                        f"{'it' if len(failed) == 1 else 'them all'} in one folder given with --weights-dir")
    return paths


def weight_path(weights: WeightFile, weights_dir: str | Path | None = None) -> Path:
    """The local path of one weight file (see `locate`)."""
    return locate([weights], weights_dir)[0]


def digest(path: str | Path) -> str:
    """The first 16 hex digits of the file's sha256: which weights a feature was computed with."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


# ---- unusable files ----------------------------------------------------------------------------

def remedy(path: Path) -> str:
    """What to do about a bad weight file: a file in the hub cache is downloaded again once
    deleted; one the user put elsewhere (--weights-dir, Keras's cache) must be replaced."""
    for weights in (VGGISH, VGG19_KERAS, VGG19_TORCHVISION):
        if path.name in weights.names():
            if path.parent == hub_folder(weights):
                return "delete it and rerun to download it again"
            return f"replace it with a fresh download of {weights.url}"
    return "replace it with the published file"


def what_it_is(path: Path) -> str | None:
    """A plain description of a file that is evidently not a weights file (empty, a web page,
    an XML error body, a truncated zip archive; `outputs.file_kind`), or None."""
    kind = file_kind(path)
    if kind in ("an HTML page", "an XML document"):
        page = "HTML" if kind == "an HTML page" else "XML"
        return f"a web page ({page}), not a weights file: the download saved a page instead of the file"
    if kind == TRUNCATED_ZIP:
        return "a truncated file (its zip archive has no end: an interrupted download?)"
    return kind if kind == "an empty file" else None


def _short(e: Exception) -> str:
    """The first line of an exception's text, cut at a word to at most 100 characters."""
    line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return line if len(line) <= 100 else line[:100].rsplit(" ", 1)[0] + " ..."


def load_state_dict(path: Path, module: torch.nn.Module, network: str, prefix: str = "") -> None:
    """Load a torch state dict file into `module`, keeping the tensors whose names start with
    `prefix` (without it). A file that is not one, or whose tensors do not fit, is one AvelError
    naming the file, what it is, and what to do."""
    path = Path(path)
    expected = f"{path}: expected the {network} weights (a torch state dict)"
    problem = what_it_is(path)
    if problem is None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for damaged or foreign files
            problem = f"a file torch cannot read as weights ({_short(e)})"
        else:
            if not isinstance(state, dict):
                problem = f"a {type(state).__name__}, not a dict of tensors"
            else:
                names = list(state)
                state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
                problem = _mismatch(module.state_dict(), state, prefix, names)
    if problem is not None:
        raise AvelError(f"{expected}, found {problem}; {remedy(path)}")
    module.load_state_dict(state)


def _mismatch(expected: dict, found: dict, prefix: str, names: list[str]) -> str | None:
    """The first tensor missing, mis-shaped or extra, worded for `load_state_dict`'s message
    (`names`: every name in the file)."""
    for name, tensor in expected.items():
        if name not in found:
            held = f"its {len(names)} tensors start with '{names[0]}'" if names else "it holds no tensor"
            return f"no tensor '{prefix}{name}' ({held}: another network's weights?)"
        if not isinstance(found[name], torch.Tensor) or found[name].shape != tensor.shape:
            shape = tuple(getattr(found[name], "shape", ()))
            return f"tensor '{prefix}{name}' of shape {shape}, expected {tuple(tensor.shape)}"
    extra = sorted(set(found) - set(expected))
    if extra:
        return f"an unexpected tensor '{prefix}{extra[0]}' (and {len(extra) - 1} more)"
    return None
