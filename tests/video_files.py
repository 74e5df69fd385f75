"""Short generated videos for the video tests, written with PyAV: 64x48 px, a grey background
with a coloured square shown from `square[0]` to `square[1]` seconds and a 1 kHz tone from
`tone[0]` to `tone[1]` seconds, a small stand-in for VGG19 (`SmallVisual`), and a tiny detector
trained on their features. Lossless codecs (FFV1 video, 16-bit PCM audio in Matroska) by default,
so that changing one second of content changes no decoded sample outside it. A plain module (no
tests): the video tests and the scripts (timeline_demo.py, resampling_study.py) import it."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from avel_dgl.video import vgg19

WIDTH, HEIGHT = 64, 48
TONE_HZ = 1000.0


def frame_image(t: float, square=(3, 6), colour=(220, 30, 30)) -> np.ndarray:
    """The (48, 64, 3) uint8 RGB picture shown at time t."""
    img = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    if square[0] <= t < square[1]:
        img[12:36, 20:44] = colour
    return img


def tone(t: np.ndarray, span=(2, 7), amplitude: float = 0.5) -> np.ndarray:
    return np.where((t >= span[0]) & (t < span[1]), amplitude * np.sin(2 * np.pi * TONE_HZ * t), 0.0)


def make_video(path: Path, seconds: float = 10.0, fps: int = 25, square=(3, 6), tone_span=(2, 7),
               colour=(220, 30, 30), audio_rate: int | None = 16000, channels: int = 1,
               frame_times: np.ndarray | None = None, lossy: bool = False,
               picture=None, sound=None) -> Path:
    """Write a video. `frame_times` (seconds) gives a variable frame rate; `audio_rate=None`
    writes no audio track; `lossy` writes H.264 + AAC in MP4 instead. `picture(t)` and
    `sound(t, channel)` override the default content."""
    picture = picture or (lambda t: frame_image(t, square, colour))
    sound = sound or (lambda t, ch: tone(t, tone_span))
    times = np.arange(0, seconds, 1 / fps) if frame_times is None else np.asarray(frame_times)
    with av.open(str(path), "w", format="mp4" if lossy else "matroska") as out:
        video = out.add_stream("libx264" if lossy else "ffv1", rate=fps)
        video.width, video.height = WIDTH, HEIGHT
        video.pix_fmt = "yuv420p" if lossy else "yuv444p"
        video.time_base = video.codec_context.time_base = Fraction(1, 1000)  # millisecond timestamps (VFR)
        if lossy:
            video.options = {"qp": "0"}
        audio = None
        if audio_rate is not None:
            layout = "mono" if channels == 1 else "stereo"
            audio = out.add_stream("aac" if lossy else "pcm_s16le", rate=audio_rate, layout=layout)
        for t in times:
            frame = av.VideoFrame.from_ndarray(picture(float(t)), format="rgb24")
            frame.pts, frame.time_base = int(round(t * 1000)), Fraction(1, 1000)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if audio is not None:
            n = int(round(seconds * audio_rate))
            t = np.arange(n) / audio_rate
            samples = np.stack([sound(t, ch) for ch in range(channels)])  # (channels, n)
            block = 1024
            for start in range(0, n, block):
                part = samples[:, start:start + block]
                if lossy:  # AAC takes planar float
                    frame = av.AudioFrame.from_ndarray(part.astype(np.float32), format="fltp", layout=layout)
                else:  # packed int16: (1, n * channels), interleaved
                    pcm = np.round(part.T * 32767).astype(np.int16).reshape(1, -1)
                    frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout=layout)
                frame.sample_rate, frame.pts = audio_rate, start
                for packet in audio.encode(frame):
                    out.mux(packet)
            for packet in audio.encode():
                out.mux(packet)
    return path


class SmallVisual(vgg19.VisualNet):
    """A stand-in for VGG19 in end-to-end tests: 224x224 Caffe-preprocessed frames -> (7, 7, 512)
    maps through 32x32 average pooling and a random 1x1 convolution."""

    def __init__(self):
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(torch.nn.AvgPool2d(32), torch.nn.Conv2d(3, 512, 1), torch.nn.ReLU())
        self.style, self.device = "caffe", torch.device("cpu")
        self.features.eval()


def train_tiny_detector(audio: np.ndarray, visual: np.ndarray, spans, event_class: int, path: Path,
                        steps: int = 150) -> Path:
    """A tiny DPNet (width 16, one block) trained with SEL on (N, 10, 128) audio and (N, 10, 512)
    pooled visual features whose event segments are `spans`, saved as a checkpoint at `path`."""
    from avel_dgl import graph
    from avel_dgl.checkpoint import save_checkpoint
    from avel_dgl.config import ModelConfig, get_preset
    from avel_dgl.nn.dpnet import build

    config = get_preset("small")
    config.model = ModelConfig(width=16, blocks=1, norm="layer")
    torch.manual_seed(0)
    model = build(config, graph.DEFAULT_KERNEL)
    audio, visual = torch.from_numpy(audio), torch.from_numpy(visual)
    labels = torch.full(audio.shape[:2], 28)
    for i, (a, b) in enumerate(spans):
        labels[i, a:b] = event_class
    model.audio_norm.set_stats(audio)
    model.visual_norm.set_stats(visual)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = graph.batch_graph(len(spans))
    model.train()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(g, audio, visual).reshape(-1, 29), labels.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    save_checkpoint(path, model, config, epoch=1, val_acc=0.0)
    return path
