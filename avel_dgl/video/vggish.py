"""The audio network: VGGish (Hershey et al. 2017, the AudioSet release of TensorFlow's models),
defined here on torch alone: its input processing (one log-mel example of 96 frames x 64 mel
bands per 0.96 s of 16-kHz audio) and the network up to its 128-d embedding after the last ReLU,
before the PCA/quantisation post-processing (the AVE release stores these raw embeddings:
non-negative, mostly zeros).

The weights are the TensorFlow release's as torchaudio converted them (`vggish.pt`, a state dict
whose keys this module's layer layout reproduces: `features_network.<i>` and
`embedding_network.<i>`). They are read from torch's hub cache or --weights-dir
(avel_dgl.video.weights); without a file, AudioNet keeps torch's default initialisation, for tests and
benchmarks that need the same computation without the file. tests/test_video.py checks both
halves against torchaudio 2.2.1's port where it is installed (torchaudio dropped the port in 2.9).

Input processing, with the release's parameters (vggish_params.py): 25-ms periodic Hann windows
every 10 ms, the magnitude of a 512-point FFT (the 400 windowed samples zero-padded), 64
triangular bands evenly spaced on the HTK mel scale from 125 to 7500 Hz (the DC bin excluded),
then log(mel + 0.01)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from avel_dgl.video.decode import EXAMPLE_SAMPLES, SAMPLE_RATE
from avel_dgl.video.weights import load_state_dict

WINDOW = 400  # 25 ms at 16 kHz
HOP = 160  # 10 ms
FFT_SIZE = 512  # the next power of two above the window
MEL_BANDS = 64
MEL_RANGE_HZ = (125.0, 7500.0)
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # 0.96 s of frames: one example (consecutive examples do not overlap)

# The convolutional part as VGG configurations write it: a number is a 3x3 convolution (stride 1,
# padding 1) with that many output channels followed by a ReLU, "M" a 2x2 max pool. The module
# indices this gives are those of the state dict's `features_network.<i>` keys.
FEATURES = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")
FEATURE_MAP = (512, 6, 4)  # channels, frames / 16, bands / 16 after the four pools
EMBEDDING = (4096, 4096, 128)  # fully connected widths, each followed by a ReLU


def _hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """The HTK mel scale, as the VGGish release defines it."""
    return 1127.0 * torch.log1p(hz / 700.0)


def mel_matrix() -> torch.Tensor:
    """(FFT_SIZE // 2 + 1, MEL_BANDS) float32: each FFT bin's weight in each triangular band.
    Band b rises from edge b to its centre, edge b + 1, and falls to edge b + 2 (edges evenly
    spaced in mel); the triangles are linear in mel, not in Hz. (The release also zeroes the DC
    bin, which lies below the lowest edge anyway.)"""
    bins = _hz_to_mel(torch.linspace(0.0, SAMPLE_RATE / 2, FFT_SIZE // 2 + 1, dtype=torch.float64))
    low, high = _hz_to_mel(torch.tensor(MEL_RANGE_HZ, dtype=torch.float64))
    edges = torch.linspace(float(low), float(high), MEL_BANDS + 2, dtype=torch.float64)
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - left) / (centre - left)
    falling = (right - bins[:, None]) / (right - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


def log_mel_examples(waveforms: torch.Tensor) -> torch.Tensor:
    """16-kHz waveforms (n, samples) float32 -> log-mel examples (n * k, 1, 96, 64), k = the whole
    0.96-s examples in `samples` (EXAMPLE_SAMPLES gives exactly one), a waveform's in order."""
    frames = waveforms.unfold(-1, WINDOW, HOP)  # (n, frames, WINDOW): frame f starts at f * HOP
    window = torch.hann_window(WINDOW, periodic=True, dtype=waveforms.dtype, device=waveforms.device)
    magnitude = torch.fft.rfft(frames * window, n=FFT_SIZE).abs()  # (n, frames, 257)
    log_mel = torch.log(magnitude @ mel_matrix().to(magnitude) + LOG_OFFSET)  # (n, frames, 64)
    examples = log_mel.unfold(1, EXAMPLE_FRAMES, EXAMPLE_FRAMES)  # (n, k, 64, 96)
    return examples.transpose(-1, -2).reshape(-1, 1, EXAMPLE_FRAMES, MEL_BANDS)


class VGGish(torch.nn.Module):
    """Log-mel examples (n, 1, 96, 64) -> embeddings (n, 128), non-negative (the last ReLU)."""

    def __init__(self):
        super().__init__()
        layers, channels = [], 1
        for item in FEATURES:
            if item == "M":
                layers.append(torch.nn.MaxPool2d(2))
            else:
                layers += [torch.nn.Conv2d(channels, item, 3, padding=1), torch.nn.ReLU()]
                channels = item
        self.features_network = torch.nn.Sequential(*layers)
        layers, width = [], math.prod(FEATURE_MAP)
        for out in EMBEDDING:
            layers += [torch.nn.Linear(width, out), torch.nn.ReLU()]
            width = out
        self.embedding_network = torch.nn.Sequential(*layers)

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        maps = self.features_network(examples)  # (n, 512, 6, 4)
        # TensorFlow's flattening order (channels last), which the first dense layer was trained on.
        return self.embedding_network(maps.permute(0, 2, 3, 1).flatten(1))


class AudioNet:
    """16-kHz waveforms of EXAMPLE_SAMPLES -> log-mel examples -> embeddings (n, 128) float32,
    with the weights of the `vggish.pt` file at `path`, or torch's random initialisation."""

    def __init__(self, path: str | Path | None = None, device: torch.device | str = "cpu"):
        self.model = VGGish()
        if path is not None:
            load_state_dict(Path(path), self.model, "VGGish")
        self.device = torch.device(device)
        self.model.to(self.device).eval()

    def log_mel(self, waveforms: np.ndarray) -> torch.Tensor:
        """(n, 1, 96, 64): one VGGish example per waveform of EXAMPLE_SAMPLES."""
        assert waveforms.shape[1] == EXAMPLE_SAMPLES, "a waveform of EXAMPLE_SAMPLES gives one example"
        return log_mel_examples(torch.from_numpy(np.ascontiguousarray(waveforms, dtype=np.float32)))

    @torch.no_grad()
    def __call__(self, examples: torch.Tensor) -> np.ndarray:
        """Log-mel examples (n, 1, 96, 64) -> embeddings (n, 128)."""
        return self.model(examples.to(self.device)).cpu().numpy()
