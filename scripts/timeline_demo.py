"""The localize timeline page on generated clips, without any downloaded weights: the feature
networks have random weights (VGG19 replaced by the tests' small stand-in), and the detector is a
tiny DPNet trained on features of generated videos where the event ("Church bell", class 0) is a
red square shown while a 1 kHz tone plays (the square alone or the tone alone is background). Used for the screenshot in docs/VIDEO.md.

    python scripts/timeline_demo.py --out /tmp/timeline_demo
    chromium --headless --no-sandbox --screenshot=shot.png --window-size=1400,1200 file:///tmp/timeline_demo/timeline.html
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from avel_dgl.engine import load_model  # noqa: E402
from avel_dgl.localize import localize  # noqa: E402
from avel_dgl.runtime import Runtime  # noqa: E402
from avel_dgl.video import extract, vggish  # noqa: E402
from video_files import SmallVisual, make_video, train_tiny_detector  # noqa: E402

# Training clips: (square shown, tone playing); the event is where both happen at once.
CLIPS = [((0, 3), (0, 3)), ((2, 5), (2, 5)), ((3, 6), (3, 6)), ((4, 8), (4, 8)), ((6, 10), (6, 10)),
         ((1, 9), (1, 9)), ((0, 0), (0, 0)), ((5, 7), (5, 7)), ((0, 10), (0, 10)), ((0, 4), (5, 9)),
         ((0, 0), (2, 8)), ((3, 9), (0, 0)), ((2, 8), (4, 6)), ((1, 5), (3, 10))]


def event_span(square, tone):
    start, end = max(square[0], tone[0]), min(square[1], tone[1])
    return (start, end) if start < end else (0, 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    nets = extract.Networks(vggish.AudioNet(), SmallVisual())
    settings = extract.Settings(frames_per_segment=2, pooled=True)
    parts = [extract.extract_video(make_video(out / f"train{i}.mkv", square=sq, tone_span=tn), nets, settings)
             for i, (sq, tn) in enumerate(CLIPS)]
    checkpoint = train_tiny_detector(np.stack([q.audio for q in parts]), np.stack([q.visual for q in parts]),
                                     [event_span(*c) for c in CLIPS], 0, out / "best.pt", steps=300)
    clips = [make_video(out / "clip.mkv", square=(3, 6), tone_span=(3, 6)),
             make_video(out / "long_clip.mkv", seconds=25, square=(12, 17), tone_span=(12, 17)),
             make_video(out / "tone_only.mkv", square=(0, 0), tone_span=(2, 8)),
             make_video(out / "half_second.mkv", seconds=0.52, square=(0, 1), tone_span=(0, 1))]
    (out / "broken.mp4").write_bytes(b"not a video")  # listed at the end of the page as not read
    clips.append(out / "broken.mp4")
    model, _, _ = load_model(checkpoint, Runtime.create("cpu"))
    summary = localize(clips, model, out / "events.json", out / "timeline.html", out / "cache", settings,
                       checkpoint=checkpoint, networks=lambda: nets)
    print(summary)


if __name__ == "__main__":
    main()
