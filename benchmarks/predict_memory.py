"""`avel-dgl predict` streams: peak memory must not grow with the number of videos.

For each video count N, feature files of N random videos (audio (N,10,128) and pooled visual
(N,10,512), float32) are written, and a fresh process predicts them all to JSON with a randomly
initialised `small`-preset DPNet, reporting its peak resident memory (ru_maxrss) just before and
after predicting, its wall time and throughput. Bounded memory shows as the same peak for every
N; the ratio of peaks (largest N over smallest) is the figure to read, as are videos/s, both from
one run so machine noise hits every N alike.

    python benchmarks/predict_memory.py [--videos 2000,20000] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
from avel_dgl.predict import feature_files_source, predict_to_file
from avel_dgl.engine import load_model
from avel_dgl.runtime import Runtime
ckpt, audio, visual, out, batch = sys.argv[1:6]
model, _, _ = load_model(ckpt, Runtime.create("cpu"))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # imports and the model
start = time.perf_counter()
_, videos, events = predict_to_file(model, feature_files_source(audio, visual), out, int(batch), ckpt)
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"videos": videos, "seconds": seconds, "peak_before_mb": before / 1024, "peak_after_mb": after / 1024}))
"""


def write_features(folder: Path, n: int, chunk: int = 5000) -> tuple[Path, Path]:
    """Random features written in chunks (this process stays small too)."""
    rng = np.random.default_rng(0)
    paths = folder / "audio.h5", folder / "visual.h5"
    for path, dim in zip(paths, (128, 512)):
        with h5py.File(path, "w") as f:
            dset = f.create_dataset("avadataset", (n, 10, dim), dtype="float32")
            for start in range(0, n, chunk):
                dset[start:start + chunk] = rng.standard_normal((min(chunk, n - start), 10, dim), dtype=np.float32)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default="2000,20000")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    from avel_dgl.checkpoint import save_checkpoint
    from avel_dgl.config import get_preset
    from avel_dgl.nn.dpnet import build
    from avel_dgl.train import set_seed

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        set_seed(0)
        config = get_preset("small")
        save_checkpoint(tmp / "model.pt", build(config, "dgl"), config)
        for n in [int(x) for x in args.videos.split(",")]:
            folder = tmp / str(n)
            folder.mkdir()
            audio, visual = write_features(folder, n)
            out = subprocess.run([sys.executable, "-c", CHILD, str(tmp / "model.pt"), str(audio), str(visual),
                                  str(folder / "pred.json"), str(args.batch_size)],
                                 check=True, capture_output=True, text=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["json_mb"] = (folder / "pred.json").stat().st_size / 2**20
            rows.append(row)
            for p in folder.iterdir():
                p.unlink()

    print(f"{'videos':>8} {'seconds':>8} {'videos/s':>9} {'peak before MB':>15} {'peak after MB':>14} {'JSON MB':>8}")
    for r in rows:
        print(f"{r['videos']:>8} {r['seconds']:>8.1f} {r['videos'] / r['seconds']:>9.0f} {r['peak_before_mb']:>15.0f} "
              f"{r['peak_after_mb']:>14.0f} {r['json_mb']:>8.1f}")
    first, last = rows[0], rows[-1]
    print(f"peak memory ratio ({last['videos']} / {first['videos']} videos): "
          f"{last['peak_after_mb'] / first['peak_after_mb']:.3f}; "
          f"throughput ratio: {(last['videos'] / last['seconds']) / (first['videos'] / first['seconds']):.2f}")


if __name__ == "__main__":
    main()
