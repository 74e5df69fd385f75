"""Extraction cost on this machine: seconds per 10-s video and frames per second with 16 and 4
frames per segment, the share of decoding and preprocessing (decode, convert, resize, normalise,
log-mel) against the networks, and peak RSS for 10 and for 100 videos; and the floor: the same
VGG19-to-pool5 convolutions timed bare (19.5 G multiply-adds per 224x224 frame) in the variants
the ecosystem offers (torch.no_grad or torch.inference_mode, channels_last memory format, the
oneDNN (mkldnn) tensor layout, batch sizes), against which `extract`'s seconds per 10-s video are
set as a ratio.

Random weights (load_networks(weights="random")): the computation is the same as with the
published weights, which cannot be downloaded here. Each measurement runs in its own process,
so its peak RSS (ru_maxrss) is its own. Videos: 640x360, 25 fps, H.264 + AAC 44.1 kHz stereo,
moving content, written with PyAV.

    python benchmarks/extract.py --work /tmp/extract_bench                 # everything
    python benchmarks/extract.py --work /tmp/extract_bench --floor-only    # the floor table and the ratio
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
    if kind == "speed":  # the networks' first call (oneDNN builds its kernels) off the clock, as the floor's warm-up
        nets.visual(torch.zeros(min(settings.batch_size, 10 * per), 3, 224, 224))
        nets.audio(torch.zeros(10, 1, 96, 64))
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
                                        lambda: nets, progress=False)
        extract.write_ave_folder(Path(out), entries, False)
        result = {}
    result.update(seconds=time.perf_counter() - t0, videos=len(videos), threads=torch.get_num_threads(),
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result))


EXTRACTS_VARIANT = "inference_mode, channels_last, batch 16 (extract's)"
FLOOR_VARIANTS = {  # name: (batch, grad mode, memory layout)
    "no_grad, contiguous, batch 16": (16, "no_grad", "contiguous"),
    "inference_mode, contiguous, batch 16": (16, "inference_mode", "contiguous"),
    "no_grad, channels_last, batch 16": (16, "no_grad", "channels_last"),
    EXTRACTS_VARIANT: (16, "inference_mode", "channels_last"),
    "no_grad, oneDNN tensors, batch 16": (16, "no_grad", "mkldnn"),
    "inference_mode, channels_last, batch 8": (8, "inference_mode", "channels_last"),
    "inference_mode, channels_last, batch 32": (32, "inference_mode", "channels_last"),
}


def floor_child(name: str, repeats: int) -> None:
    """VGG19 to pool5 alone on random 224x224 frames: seconds per frame (best of `repeats` after
    a warm-up call), as the CLI sets threads."""
    import torch.utils.mkldnn

    from avel_dgl.video.vgg19 import vgg19_features

    set_threads()
    batch, mode, layout = FLOOR_VARIANTS[name]
    torch.manual_seed(0)
    net = vgg19_features().eval()
    x = torch.randn(batch, 3, 224, 224)
    if layout == "channels_last":
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    elif layout == "mkldnn":
        net, x = torch.utils.mkldnn.to_mkldnn(net), x.to_mkldnn()
    context = torch.inference_mode if mode == "inference_mode" else torch.no_grad
    times = []
    with context():
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t0)
    best = min(times[1:])
    print(json.dumps({"s_per_frame": best / batch, "threads": torch.get_num_threads()}))


def floor(ten: Path, work: Path, repeats: int, per: int) -> None:
    """The floor table, then extract on a 10-s video with `per` frames per segment against it."""
    macs = 19.5084288e9  # VGG19's 16 convolutions at 224x224, multiply-adds per frame
    print(f"| VGG19 to pool5, bare (best of {repeats}) | s per frame | GFLOP/s | s per 10-s video at 16 frames "
          "per segment |")
    print("|---|---|---|---|")
    results = {}
    for name in FLOOR_VARIANTS:
        r = run_child("floor", name, repeats)
        results[name] = r["s_per_frame"]
        print(f"| {name} | {r['s_per_frame']:.3f} | {2 * macs / r['s_per_frame'] / 1e9:.1f} | "
              f"{160 * r['s_per_frame']:.1f} |", flush=True)
    r = run_child("speed", per, work, ten)
    frames = 10 * per
    today, best = results[EXTRACTS_VARIANT], min(results.values())
    print(f"\nextract, one 10-s video at {per} frames per segment: {r['seconds']:.1f} s "
          f"({r['threads']} threads); floor {frames * today:.1f} s (extract's own variant), "
          f"{frames * best:.1f} s (fastest variant, {min(results, key=results.get)}); "
          f"ratio {r['seconds'] / (frames * today):.2f}x and {r['seconds'] / (frames * best):.2f}x")


def run_child(*args) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path)
    p.add_argument("--short-seconds", type=float, default=2.0, help="length of the videos of the RSS runs")
    p.add_argument("--floor-only", action="store_true", help="only the floor table and extract's ratio to it")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per floor variant (after one warm-up)")
    p.add_argument("--frames-per-segment", type=int, default=16, help="of the extract run set against the floor")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        if args.child[0] == "floor":
            return floor_child(args.child[1], int(args.child[2]))
        kind, per, out, *videos = args.child
        return child(kind, videos, int(per), out)
    args.work.mkdir(parents=True, exist_ok=True)
    ten = write_video(args.work / "ten.mp4", 10)
    floor(ten, args.work, args.repeats, args.frames_per_segment)
    if args.floor_only:
        return
    print()
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
