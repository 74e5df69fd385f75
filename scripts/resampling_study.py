"""How much the audio resampler changes VGGish's input: avel-dgl's whole-track FFmpeg resampling
(decode.mono_16k) against the AVE release's per-second resampy kaiser_best after the channel
mean (decode.release_examples), on generated audio written to lossless files (16-bit PCM in
Matroska) and read back through the extract code: tones, noise, chirps and onsets at the
one-second edges, at 44.1 and 48 kHz, stereo with different content in each channel.

Measured on the log-mel examples (96 frames x 64 bands, natural log of mel magnitude + 0.01),
per example: the largest and the mean absolute difference, and the same for references that
are negligible by construction:
- `kaiser_fast`: the release's path with resampy's other filter (two good resamplers);
- `delay 1 sample`: the release's path on the same audio delayed by one sample of the file's
  rate (23 us at 44.1 kHz), less than the start offsets decoders and containers already put
  into AVE's own features (AAC encoder delay alone is 1024 samples).
And on the embeddings of VGGish with random weights (the computation without the file): the
cosine similarity between the two paths' embeddings.

    python scripts/resampling_study.py [--work DIR]

Output: the table in docs/VIDEO.md ("Resampling").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from avel_dgl.video import decode  # noqa: E402
from avel_dgl.video.vggish import AudioNet  # noqa: E402
from video_files import make_video  # noqa: E402

SECONDS = 10


def _onsets(t: np.ndarray, ch: int) -> np.ndarray:
    """Noise bursts that start just before, at, and just after the one-second edges."""
    rng = np.random.default_rng(ch)
    starts = np.array([0.99, 2.0, 3.005, 4.98, 6.0, 7.995, 9.0])
    burst = np.zeros_like(t)
    for s in starts:
        burst += ((t >= s) & (t < s + 0.2)) * 0.5
    return burst * rng.uniform(-1, 1, size=t.shape)


SIGNALS = {
    "tones": lambda t, ch: 0.3 * np.sin(2 * np.pi * (440, 1000)[ch] * t) + 0.2 * np.sin(2 * np.pi * (3000, 6500)[ch] * t),
    "noise": lambda t, ch: 0.3 * np.random.default_rng(ch).standard_normal(t.shape).clip(-3, 3),
    "chirp": lambda t, ch: 0.4 * np.sin(2 * np.pi * (100 * t + (7900 - 100) / (2 * SECONDS) * t ** 2 * (1 + 0.01 * ch))),
    "onsets": _onsets,
}


def _ffmpeg(path: Path) -> np.ndarray:
    return np.stack(list(decode.segment_audio(decode.mono_16k(path), SECONDS)))


def _release(path: Path, resampy_filter: str = "kaiser_best") -> np.ndarray:
    return np.stack(list(decode.release_examples(path, SECONDS, resampy_filter)))


def _delayed(sound):
    """`sound` one sample later (t is the file's sample times)."""
    return lambda t, ch: np.concatenate([[0.0], sound(t, ch)[:-1]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="Folder for the generated files (default: a temp one).")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="resampling_"))
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = AudioNet("random")

    def log_mel(w):
        return net.log_mel(w)[:, 0].numpy().astype(np.float64)

    rows = []
    for rate in (44100, 48000):
        for name, sound in SIGNALS.items():
            path = make_video(work / f"{name}_{rate}.mkv", seconds=SECONDS, fps=5, audio_rate=rate, channels=2,
                              sound=sound)
            delayed = make_video(work / f"{name}_{rate}_delayed.mkv", seconds=SECONDS, fps=5, audio_rate=rate,
                                 channels=2, sound=_delayed(sound))
            release = _release(path)
            variants = {"ffmpeg": _ffmpeg(path), "kaiser_fast": _release(path, "kaiser_fast"),
                        "delay 1 sample": _release(delayed)}
            reference = log_mel(release)
            with torch.no_grad():
                ref_embedding = net(torch.from_numpy(reference[:, None].astype(np.float32)))
            for variant, waves in variants.items():
                x = log_mel(waves)
                diff = np.abs(x - reference)
                with torch.no_grad():
                    emb = net(torch.from_numpy(x[:, None].astype(np.float32)))
                cos = (emb * ref_embedding).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref_embedding, axis=1))
                rows.append((rate, name, variant, diff.max(), diff.mean(), np.abs(x[:, 1:] - reference[:, 1:]).max(),
                             cos.min()))
    print("| rate | signal | against the release's path | max abs log-mel diff | mean abs | max abs, "
          "frames 1-95 | min embedding cosine (random VGGish) |")
    print("|---|---|---|---|---|---|---|")
    for rate, name, variant, dmax, dmean, dmax_inner, cmin in rows:
        print(f"| {rate} | {name} | {variant} | {dmax:.3f} | {dmean:.4f} | {dmax_inner:.3f} | {cmin:.5f} |")
    print(f"\nlog-mel values of the release's path span about [{np.log(0.01):.2f}, 6] (log(mel + 0.01))")


if __name__ == "__main__":
    main()
