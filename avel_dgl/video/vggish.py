"""The audio network: VGGish (Hershey et al. 2017) as torchaudio ports it from the TensorFlow
release (torchaudio.prototype.pipelines.VGGISH), its input processing (log-mel examples) and
its 128-d embedding after the last ReLU, before the PCA/quantisation post-processing (the AVE
release stores these raw embeddings: non-negative, mostly zeros).

The weights are read from torch's hub cache or --weights-dir (avel_dgl.video.weights), never
through the bundle's own downloader; `weights="random"` keeps torchaudio's initialisation, for
tests and benchmarks that need the same computation without the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from avel_dgl.errors import AvelError
from avel_dgl.video.decode import EXAMPLE_SAMPLES, SAMPLE_RATE
from avel_dgl.video.weights import VGGISH, weight_path

EMBEDDING_DIM = 128


def _bundle():
    from torchaudio.prototype.pipelines import VGGISH as bundle

    return bundle


class AudioNet:
    """16-kHz waveforms of EXAMPLE_SAMPLES -> log-mel examples -> embeddings (n, 128) float32."""

    def __init__(self, weights: str = "published", weights_dir: str | Path | None = None,
                 device: torch.device | str = "cpu"):
        bundle = _bundle()
        assert bundle.sample_rate == SAMPLE_RATE
        self.model = bundle.VGGish()
        if weights == "published":
            path = weight_path(VGGISH, weights_dir)
            try:
                self.model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            except Exception as e:  # a truncated download, another file under the same name
                raise AvelError(f"{path}: expected torchaudio's VGGish state dict, found an unusable file "
                                f"({' '.join(str(e).split())[:200]}); delete it and rerun to download it again") \
                    from None
        elif weights != "random":
            raise ValueError(f"weights: expected 'published' or 'random', found {weights!r}")
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        self.examples = bundle.get_input_processor()

    def log_mel(self, waveforms: np.ndarray) -> torch.Tensor:
        """(n, 1, 96, 64): one VGGish example (96 frames x 64 mel bands) per waveform."""
        out = [self.examples(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))) for w in waveforms]
        assert all(x.shape[0] == 1 for x in out), "a waveform of EXAMPLE_SAMPLES gives one example"
        return torch.cat(out)

    @torch.no_grad()
    def __call__(self, examples: torch.Tensor) -> np.ndarray:
        """Log-mel examples (n, 1, 96, 64) -> embeddings (n, 128)."""
        return self.model(examples.to(self.device)).cpu().numpy()

    def embed(self, waveforms: np.ndarray) -> np.ndarray:
        """Waveforms (n, EXAMPLE_SAMPLES) -> embeddings (n, 128)."""
        if len(waveforms) == 0:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        assert waveforms.shape[1] == EXAMPLE_SAMPLES
        return self(self.log_mel(waveforms))
