"""The pooled visual cache: (N, 10, 7, 7, 512) maps averaged to (N, 10, 512) float32, built once.

DPNet only ever uses the spatial average of the VGG19 maps (global average pooling, section 3.2),
and the real visual file is 7.7 GB of float64. The cache is built by streaming the source in
chunks of videos, so peak memory stays bounded, and is stored next to the data as
`<data_dir>/.avel_cache/pooled_<source>.h5`. It records the source's size and modification time;
a changed source is detected and the cache rebuilt.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from avel_dgl.data.ave import FEATURE_KEY, N_SEGMENTS, VISUAL_MAP_SHAPE
from avel_dgl.errors import AvelError

CACHE_DIR = ".avel_cache"
CHUNK_VIDEOS = 64  # 64 videos of float64 maps = 125 MB read at a time


def _fingerprint(source: Path) -> tuple[int, int]:
    stat = source.stat()
    return stat.st_size, stat.st_mtime_ns


def cache_path(data_dir: Path, source_name: str) -> Path:
    return Path(data_dir) / CACHE_DIR / f"pooled_{Path(source_name).stem}.h5"


def build_pooled_cache(source: Path, target: Path, chunk_videos: int = CHUNK_VIDEOS) -> None:
    """Stream `source` in chunks of videos, average the 7x7 grid, write float32 to `target`.

    Written to a temporary name and renamed, so an interrupted build never leaves a cache behind.
    """
    try:
        src_file = h5py.File(source, "r")
    except OSError as e:
        raise AvelError(f"{source}: not a readable HDF5 file ({e})") from None
    with src_file:
        if FEATURE_KEY not in src_file:
            raise AvelError(f"{source}: key '{FEATURE_KEY}' not found (found keys: {sorted(src_file.keys())})")
        dset = src_file[FEATURE_KEY]
        expected = (N_SEGMENTS, *VISUAL_MAP_SHAPE)
        if dset.ndim != 5 or tuple(dset.shape[1:]) != expected:
            raise AvelError(f"{source}: key '{FEATURE_KEY}' expected shape (N, {', '.join(map(str, expected))}), "
                            f"found {tuple(dset.shape)}")
        n = dset.shape[0]
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        size, mtime = _fingerprint(source)
        with h5py.File(tmp, "w") as out:
            pooled = out.create_dataset(FEATURE_KEY, shape=(n, N_SEGMENTS, VISUAL_MAP_SHAPE[-1]), dtype="float32")
            for start in range(0, n, chunk_videos):
                block = dset[start:start + chunk_videos]  # (c, 10, 7, 7, 512), source dtype
                pooled[start:start + block.shape[0]] = block.mean(axis=(2, 3), dtype=np.float64).astype(np.float32)
            out.attrs["source_size"] = size
            out.attrs["source_mtime_ns"] = mtime
        os.replace(tmp, target)


def pooled_visual(data_dir: str | Path, source_name: str) -> np.ndarray:
    """The pooled (N, 10, 512) float32 features of `data_dir/source_name`, from the cache.

    The cache is (re)built when missing or when the source's size or modification time changed.
    """
    data_dir = Path(data_dir)
    source = data_dir / source_name
    if not source.is_file():
        raise AvelError(f"{source}: file not found")
    target = cache_path(data_dir, source_name)
    if target.is_file():
        with h5py.File(target, "r") as f:
            if (int(f.attrs.get("source_size", -1)), int(f.attrs.get("source_mtime_ns", -1))) == _fingerprint(source):
                return f[FEATURE_KEY][()]
    build_pooled_cache(source, target)
    with h5py.File(target, "r") as f:
        return f[FEATURE_KEY][()]
