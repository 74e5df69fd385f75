"""Benchmark: build the pooled visual cache from a full-size AVE visual file; wall time, peak RSS.

    python benchmarks/cache_build.py                # writes a 7.7 GB float64 file, measures, deletes it
    python benchmarks/cache_build.py --data DIR     # uses DIR/visual_feature.h5 as it is

The build runs in a fresh child process, so its peak RSS (getrusage ru_maxrss) covers only the
imports, the build and reading the pooled result, not the generation of the test file. Before
the cold run the source is flushed and dropped from the page cache (posix_fadvise DONTNEED), so
the build reads from disk; `--warm` adds a second run that reads it from the page cache instead.
The cache goes to a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_VIDEOS = 4143


def write_visual_file(path: Path, n_videos: int, dtype: str, chunk_videos: int = 32) -> None:
    """A release-shaped visual file, contiguous like the release, written chunk by chunk with
    random non-negative values (timing does not depend on the values)."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("avadataset", shape=(n_videos, 10, 7, 7, 512), dtype=dtype)
        for start in range(0, n_videos, chunk_videos):
            count = min(chunk_videos, n_videos - start)
            dset[start:start + count] = rng.random((count, 10, 7, 7, 512)).astype(dtype, copy=False)
    drop_from_page_cache(path)


def drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # only clean pages can be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def resident_share(path: Path) -> str:
    """How much of the file is in the page cache, from util-linux `fincore` when available."""
    if not shutil.which("fincore"):
        return "unknown (no fincore)"
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE", str(path)],
                         capture_output=True, text=True)
    try:
        resident, size = map(int, out.stdout.split())
    except ValueError:
        return "unknown"
    return f"{100 * resident / size:.0f}%"


def _vm_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in KiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def child(data_dir: str, source_name: str, cache_dir: str, chunk_videos: int) -> None:
    """Runs in the measured process: build (or reuse) the cache and read the pooled array."""
    import resource

    from avel_dgl.data.cache import pooled_visual

    rss_after_imports = _vm_kb("VmRSS")  # numpy and h5py: data.cache no longer imports torch
    start = time.perf_counter()
    pooled = pooled_visual(data_dir, source_name, cache_dir=cache_dir, chunk_videos=chunk_videos)
    wall = time.perf_counter() - start
    print(json.dumps({
        "wall_s": wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "rss_after_imports_mb": rss_after_imports / 1024,
        "pooled_shape": list(pooled.shape),
    }))


def measure(data_dir: Path, source_name: str, chunk_videos: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="avel_cache_bench_") as cache_dir:
        run = subprocess.run(
            [sys.executable, __file__, "--child", str(data_dir), source_name, cache_dir, str(chunk_videos)],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if run.returncode != 0:
        sys.exit(f"cache build failed:\n{run.stderr}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="folder with visual_feature.h5 (default: generate one)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()),
                        help="where the generated file goes (default: the system temp folder)")
    parser.add_argument("--videos", type=int, default=N_VIDEOS)
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--chunk-videos", type=int, default=None, help="default: the cache's CHUNK_VIDEOS")
    parser.add_argument("--warm", action="store_true", help="also time a build from the page cache")
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    args = parser.parse_args()

    from avel_dgl.data.cache import CHUNK_VIDEOS

    chunk = args.chunk_videos or CHUNK_VIDEOS
    generated = None
    if args.data:
        data_dir = args.data
    else:
        size = args.videos * 10 * 7 * 7 * 512 * (8 if args.dtype == "float64" else 4)
        free = shutil.disk_usage(args.workdir).free
        if free < size * 1.2:
            sys.exit(f"--workdir {args.workdir}: expected {size * 1.2 / 1e9:.1f} GB free, found {free / 1e9:.1f} GB")
        generated = data_dir = Path(tempfile.mkdtemp(prefix="avel_bench_data_", dir=args.workdir))
        print(f"writing {args.videos} videos of {args.dtype} maps ({size / 1e9:.2f} GB) to {data_dir} ...",
              flush=True)
        start = time.perf_counter()
        write_visual_file(data_dir / "visual_feature.h5", args.videos, args.dtype)
        print(f"  written in {time.perf_counter() - start:.0f} s", flush=True)
    source = data_dir / "visual_feature.h5"
    try:
        print(f"source: {source} ({source.stat().st_size / 1e9:.2f} GB), chunk_videos={chunk}")
        drop_from_page_cache(source)
        print(f"cold run (page-cache residency before: {resident_share(source)}):", flush=True)
        results = [("cold", measure(data_dir, source.name, chunk))]
        if args.warm:
            print(f"warm run (page-cache residency before: {resident_share(source)}):", flush=True)
            results.append(("warm", measure(data_dir, source.name, chunk)))
        for name, r in results:
            print(f"  {name}: wall {r['wall_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(after imports {r['rss_after_imports_mb']:.0f} MB), pooled {tuple(r['pooled_shape'])}")
    finally:
        if generated and not args.keep:
            shutil.rmtree(generated)
            print(f"removed {generated}")


if __name__ == "__main__":
    main()
