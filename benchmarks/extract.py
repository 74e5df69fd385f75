"""Extraction cost on this machine: seconds per 10-s video and frames per second with 16 and 4
frames per segment, the share of decoding and preprocessing (decode, convert, resize, normalise,
log-mel) against the networks, and peak RSS for 10 and for 100 videos.

Random weights (load_networks(weights="random")): the computation is the same as with the
published weights, which cannot be downloaded here. Each measurement runs in its own process,
so its peak RSS (ru_maxrss) is its own. Videos: 640x360, 25 fps, H.264 + AAC 44.1 kHz stereo,
moving content, written with PyAV.

    python benchmarks/extract.py --work /tmp/extract_bench
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avel_dgl.runtime import set_threads  # noqa: E402
from avel_dgl.video import extract  # noqa: E402


def write_video(path: Path, seconds: float, width: int = 640, height: int = 360, fps: int = 25) -> Path:
    """A moving colour gradient with a bouncing block, and a stereo chirp."""
    y, x = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = out.add_stream("aac", rate=44100, layout="stereo")
        for i in range(int(seconds * fps)):
            img = np.stack([(x + 3 * i) % 256, (y + 2 * i) % 256, (x + y + i) % 256], -1).astype(np.uint8)
            cx = (7 * i) % (width - 60)
            img[100:160, cx:cx + 60] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        n = int(seconds * 44100)
        t = np.arange(n) / 44100
        wave = 0.3 * np.sin(2 * np.pi * (200 + 100 * t) * t)
        for start in range(0, n, 1024):
            block = np.stack([wave[start:start + 1024], wave[start:start + 1024]]).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 44100, start
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)
    return path


def child(kind: str, videos: list[str], per: int, out: str) -> None:
    set_threads()  # as the CLI: all cores this process may use
    settings = extract.Settings(frames_per_segment=per)
    nets = extract.load_networks(settings, weights="random")
    t0 = time.perf_counter()
    if kind == "speed":
        timing = {"decode": 0.0, "networks": 0.0}
        frames = 0
        for v in videos:
            part = extract.extract_video(v, nets, settings)
            frames += part.info.segments * per
            for k in timing:
                timing[k] += part.timing[k]
        result = {"timing": timing, "frames": frames}
    else:  # the whole command path: parts, assembly of the HDF5 files, videos.csv
        entries = extract.extract_parts([Path(v) for v in videos], Path(out) / extract.PARTS_DIR, settings,
                                        lambda: nets, progress=False, weights_id="random")
        extract.write_ave_folder(Path(out), entries, False)
        result = {}
    result.update(seconds=time.perf_counter() - t0, videos=len(videos), threads=torch.get_num_threads(),
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result))


def run_child(*args) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path)
    p.add_argument("--short-seconds", type=float, default=2.0, help="length of the videos of the RSS runs")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, per, out, *videos = args.child
        return child(kind, videos, int(per), out)
    args.work.mkdir(parents=True, exist_ok=True)
    ten = write_video(args.work / "ten.mp4", 10)
    print("| frames per segment | s per 10-s video | frames/s | decode + preprocess share | networks share "
          "| peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    for per in (16, 4):
        r = run_child("speed", per, args.work, ten)
        total = r["timing"]["decode"] + r["timing"]["networks"]
        print(f"| {per} | {r['seconds']:.1f} | {r['frames'] / r['seconds']:.2f} | "
              f"{100 * r['timing']['decode'] / total:.1f}% | {100 * r['timing']['networks'] / total:.1f}% | "
              f"{r['peak_rss_mb']:.0f} |", flush=True)
    short = [write_video(args.work / f"short{i:03d}.mp4", args.short_seconds) for i in range(100)]
    print(f"\n| videos ({args.short_seconds:g} s, 1 frame per segment) | seconds | peak RSS (MB) |")
    print("|---|---|---|")
    for n in (10, 100):
        out = args.work / f"out{n}"
        r = run_child("rss", 1, out, *short[:n])
        print(f"| {n} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
