"""The published weight files of the feature networks: where they come from, where they are
looked for, and the one-line error when one is missing and cannot be downloaded.

A file is read from --weights-dir when given (offline machines; nothing is downloaded then),
else from torch's hub cache (`torch.hub.get_dir()`, $TORCH_HOME), where it is downloaded once on
first use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from avel_dgl.errors import AvelError


@dataclass(frozen=True)
class WeightFile:
    name: str  # file name, the same in the hub cache and in --weights-dir
    url: str
    cache_subdir: str  # under torch.hub.get_dir(), where torch's own loaders keep it
    hash_prefix: str | None = None  # sha256 prefix torch's loaders check, where the name carries one


# VGGish ported from the TensorFlow release by torchaudio (torchaudio.prototype.pipelines.VGGISH
# fetches the same file into the same place).
VGGISH = WeightFile("vggish.pt", "https://download.pytorch.org/torchaudio/models/vggish.pt", "torchaudio/models")
# VGG19 ImageNet weights of the Oxford VGG group as Keras distributes them (convolutional part).
VGG19_KERAS = WeightFile(
    "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
    "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", "checkpoints")
# torchvision's own VGG19 (trained separately: a different feature space; --visual-weights torchvision).
VGG19_TORCHVISION = WeightFile("vgg19-dcbb9e9d.pth", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
                               "checkpoints", "dcbb9e9d")


def weight_path(weights: WeightFile, weights_dir: str | Path | None = None) -> Path:
    """The local path of `weights`, downloading it into torch's hub cache if needed."""
    if weights_dir is not None:
        path = Path(weights_dir) / weights.name
        if not path.is_file():
            raise AvelError(f"--weights-dir: {path} not found; download {weights.url} and put it there")
        return path
    folder = Path(torch.hub.get_dir()) / weights.cache_subdir
    path = folder / weights.name
    if path.is_file():
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(weights.url, str(path), hash_prefix=weights.hash_prefix, progress=True)
    except Exception as e:  # no network, a proxy, a full disk, a hash mismatch: all end the same way
        reason = " ".join(str(e).split()) or type(e).__name__
        raise AvelError(f"weights file {weights.name} is missing and could not be downloaded ({reason}): "
                        f"download {weights.url} and put it in {folder}, or in a folder given with "
                        f"--weights-dir") from None
    return path
