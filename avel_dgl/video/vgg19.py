"""The visual network: VGG19's convolutional part up to pool5, a (7, 7, 512) map per 224x224
frame, with the ImageNet weights of the Oxford VGG group as Keras distributes them (the AVE
release's features; Tian et al. 2018 used Keras), loaded into torchvision's layer layout.

Preprocessing follows the Keras recipe the AVE release used: the whole frame resized to 224x224
(bilinear, as cv2.resize, rounded to integers as its uint8 output), then Keras's "caffe"
preprocessing: RGB -> BGR, 0-255 range, ImageNet channel means subtracted. torchvision's own
VGG19 weights (`visual_weights="torchvision"`, trained separately: a different feature space)
take torchvision's normalisation instead (RGB / 255, mean and std).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from avel_dgl.errors import AvelError
from avel_dgl.video.weights import load_state_dict, remedy, what_it_is

SIZE = 224
MAP_SHAPE = (7, 7, 512)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # keras.applications.imagenet_utils, mode "caffe"
TORCHVISION_MEAN, TORCHVISION_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Keras's layer names, in the order of torchvision's Conv2d modules in vgg19().features.
KERAS_LAYERS = tuple(f"block{b}_conv{c}" for b, convs in enumerate((2, 2, 4, 4, 4), 1) for c in range(1, convs + 1))


def vgg19_features() -> torch.nn.Sequential:
    """torchvision's vgg19().features (configuration E, no batch norm), randomly initialised,
    without building the classifier's 120M parameters."""
    from torchvision.models import vgg

    return vgg.make_layers(vgg.cfgs["E"], batch_norm=False)


def _weight_names(group: h5py.Group) -> list[str]:
    names = group.attrs.get("weight_names", [])
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def load_keras_vgg19(path: str | Path, features: torch.nn.Sequential) -> None:
    """Copy the 16 convolutions of a Keras VGG19 HDF5 weights file (the notop file, the file with
    the classifier, whose other layers are ignored, or a whole saved model) into `features`: Keras
    kernels (3, 3, in, out) become (out, in, 3, 3), as TensorFlow and torch both compute
    cross-correlation (no flip). One-line errors name the file and the layer."""
    path = Path(path)
    convs = [m for m in features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == len(KERAS_LAYERS)
    try:
        problem = what_it_is(path)
        f = None if problem else h5py.File(path, "r")
    except OSError as e:
        problem = f"a file HDF5 cannot read ({' '.join(str(e).split())})"
    if problem:
        raise AvelError(f"{path}: expected Keras VGG19 weights (HDF5), found {problem}; {remedy(path)}") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f  # a whole model saves its weights there
        backend = root.attrs.get("backend", f.attrs.get("backend", b"tensorflow"))
        if (backend.decode() if isinstance(backend, bytes) else str(backend)) == "theano":
            raise AvelError(f"{path}: expected TensorFlow-ordered kernels (the tf_kernels file), found Theano's")
        for name, conv in zip(KERAS_LAYERS, convs):
            if name not in root:
                raise AvelError(f"{path}: expected Keras layer '{name}' (VGG19), found layers {sorted(root)[:6]}...")
            group = root[name]
            arrays = [np.asarray(group[w]) for w in _weight_names(group)] or \
                     [np.asarray(d) for d in group.values() if isinstance(d, h5py.Dataset)]
            kernels = [a for a in arrays if a.ndim == 4]
            biases = [a for a in arrays if a.ndim == 1]
            out_c, in_c = conv.weight.shape[:2]
            if len(kernels) != 1 or kernels[0].shape != (3, 3, in_c, out_c) or len(biases) != 1 \
                    or biases[0].shape != (out_c,):
                found = [a.shape for a in arrays]
                raise AvelError(f"{path}: layer '{name}': expected a kernel (3, 3, {in_c}, {out_c}) and a bias "
                                f"({out_c},), found arrays of shapes {found}")
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(kernels[0].transpose(3, 2, 0, 1).astype(np.float32)))
                conv.bias.copy_(torch.from_numpy(biases[0].astype(np.float32)))


def resize_frames(frames: list[np.ndarray]) -> torch.Tensor:
    """(n, 3, 224, 224) float32 RGB in 0-255 from uint8 (H, W, 3) frames of any size: bilinear
    on pixel centres without antialiasing, rounded (what cv2.resize gives a uint8 image)."""
    out = []
    for rgb in frames:
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
        if x.shape[-2:] != (SIZE, SIZE):
            x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=False)
        out.append(x.round_().clamp_(0, 255))
    return torch.cat(out)


def normalise(x: torch.Tensor, style: str) -> torch.Tensor:
    """Resized RGB frames (n, 3, 224, 224) in 0-255 -> the network's input."""
    if style == "caffe":
        return x.flip(1) - torch.tensor(CAFFE_MEAN_BGR, dtype=x.dtype).view(1, 3, 1, 1)
    mean, std = (torch.tensor(v, dtype=x.dtype).view(1, 3, 1, 1) for v in (TORCHVISION_MEAN, TORCHVISION_STD))
    return (x / 255 - mean) / std


class VisualNet:
    """RGB frames -> pool5 maps (n, 7, 7, 512) float32 (channels last, as the AVE files).
    `weights`: "keras" or "torchvision", read from the file at `path`; or "random" (torch's
    initialisation, Caffe preprocessing: the Keras path's computation without the file)."""

    def __init__(self, weights: str = "random", path: str | Path | None = None, device: torch.device | str = "cpu"):
        self.features = vgg19_features()
        self.style = "torchvision" if weights == "torchvision" else "caffe"
        if weights == "keras":
            load_keras_vgg19(path, self.features)
        elif weights == "torchvision":
            load_state_dict(Path(path), self.features, "torchvision VGG19", prefix="features.")
        elif weights != "random":
            raise ValueError(f"weights: expected 'keras', 'torchvision' or 'random', found {weights!r}")
        self.device = torch.device(device)
        # channels_last: oneDNN's convolutions run faster on NHWC tensors (benchmarks/extract.py).
        self.features.to(self.device, memory_format=torch.channels_last).eval()

    def preprocess(self, frames: list[np.ndarray]) -> torch.Tensor:
        return normalise(resize_frames(frames), self.style)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> np.ndarray:
        """Preprocessed frames (n, 3, 224, 224) -> pool5 maps (n, 7, 7, 512)."""
        x = x.to(self.device, memory_format=torch.channels_last)
        return self.features(x).permute(0, 2, 3, 1).cpu().numpy()
