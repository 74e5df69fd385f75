"""Long videos: does a model trained on 10-s videos localize better running a long video whole
(one graph of T segments) or in 10-s windows (stitched, overlaps averaged)? Measured on
synthetic AVE-format features: a small DPNet trained on a synthetic set, then long videos
stitched from new synthetic 10-s videos of the same generative world (each piece its own class,
event span and recording conditions), cropped at a random offset so that piece boundaries do not
line up with the windows. Reports global segment accuracy per length and mode.

    python benchmarks/long_videos.py --work /tmp/long_videos --videos 600 --epochs 10
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avel_dgl.engine import load_model  # noqa: E402
from avel_dgl.data.ave import BACKGROUND, N_EVENTS, N_SEGMENTS  # noqa: E402
from avel_dgl.data.cache import pool_maps  # noqa: E402
from avel_dgl.data.synthetic import make_synthetic, make_world, sample_spans, video_features  # noqa: E402
from avel_dgl.localize import MODES, video_probs  # noqa: E402
from avel_dgl.runtime import Runtime  # noqa: E402


def long_video(world, rng, length: int, offset: int):
    """audio (length, 128), pooled visual (length, 512), segment labels (length,)."""
    pieces = (offset + length + N_SEGMENTS - 1) // N_SEGMENTS
    classes = rng.integers(0, N_EVENTS, pieces)
    spans = sample_spans(rng, pieces)
    audio, visual, labels = [], [], []
    for c, span in zip(classes, spans):
        a, v = video_features(world, rng, int(c), tuple(span))
        audio.append(a.astype(np.float32))
        visual.append(pool_maps(v).astype(np.float32))
        t = np.arange(N_SEGMENTS)
        labels.append(np.where((t >= span[0]) & (t < span[1]), c, BACKGROUND))
    cut = slice(offset, offset + length)
    return np.concatenate(audio)[cut], np.concatenate(visual)[cut], np.concatenate(labels)[cut]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="folder for the synthetic set and the run (reused)")
    p.add_argument("--videos", type=int, default=600)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lengths", default="10,20,25,30,45,60,120")
    p.add_argument("--per-length", type=int, default=40, help="long videos per length")
    args = p.parse_args()
    torch.set_num_threads(1)
    data, run = args.work / "synthetic", args.work / "run"
    t0 = time.time()
    if not data.exists():
        make_synthetic(data, args.videos, args.seed, visual_dtype="float32")
    if not (run / "best.pt").exists():
        subprocess.run([sys.executable, "-m", "cli.main", "train", "--task", "sel", "--preset", "small", "--data",
                        str(data), "--out", str(run), "--epochs", str(args.epochs), "--quiet"], check=True, cwd=ROOT)
    print(f"data and checkpoint: {time.time() - t0:.0f} s")
    model, _, _ = load_model(run / "best.pt", Runtime.create("cpu"))
    world = make_world(args.seed)  # the training set's generative world; new videos from a new stream
    rng = np.random.default_rng(10_000 + args.seed)
    print("| length (s) | videos | " + " | ".join(f"{m} acc" for m in MODES) + " |")
    print("|---|---|" + "---|" * len(MODES))
    t1 = time.time()
    for length in map(int, args.lengths.split(",")):
        correct, total = dict.fromkeys(MODES, 0), 0
        for _ in range(args.per_length):
            offset = int(rng.integers(1, N_SEGMENTS))
            audio, visual, labels = long_video(world, rng, length, offset)
            for mode in MODES:
                correct[mode] += int((video_probs(model, audio, visual, mode).argmax(-1) == labels).sum())
            total += length
        print(f"| {length} | {args.per_length} | " + " | ".join(f"{100 * correct[m] / total:.1f}" for m in MODES) + " |")
    print(f"evaluation: {time.time() - t1:.0f} s")


if __name__ == "__main__":
    main()
