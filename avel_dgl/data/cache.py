"""The pooled visual cache: (N, 10, 7, 7, 512) maps averaged to (N, 10, 512) float32, built once.

DPNet only ever uses the spatial average of the VGG19 maps (global average pooling, section 3.2),
and the real visual file is 7.7 GB of float64. The cache is built by streaming the source in
chunks of `chunk_videos` videos into one reused buffer, so peak memory is about
chunk_videos * 2 MB (float64) whatever N is. The mean is taken in float64 and stored as float32.

While streaming, every chunk's 7x7 sums are checked: a NaN or Inf anywhere in a map makes its
float64 sum non-finite, so this is the NaN/Inf scan of the visual file (validation defers it
here rather than reading the file twice). The build fails with a one-line AvelError naming the
row and segment, and leaves no cache behind.

Where (`cache_folder`, shared with the sub-event database of data/subevents.py): a cache
directory given as an argument, else the AVEL_CACHE_DIR environment variable (set by the user, or
by `use_cache_dir`, which runtime.Runtime.for_process calls for the CLI's --cache-dir, so that the
processes a command launches inherit it); without one,
`<data_dir>/.avel_cache/` when the data folder is writable, and the user cache folder
($XDG_CACHE_HOME/avel-dgl, else ~/.cache/avel-dgl) when it is not (a shared read-only dataset
mount is the normal case; said once per data folder, as a CacheLocationWarning). In a cache
directory other than `.avel_cache` the names carry a hash of the source path,
`pooled_<stem>_<hash>.h5`, so several data folders can share it. A cache is written under a
temporary name, fsynced and renamed, so an interrupted or failed build never leaves a partial
cache.

Freshness: the cache records the source's size, modification time, shape, dtype and a content
probe (a hash of segment 0 of 8 rows spread over the file, ~1.6 MB read). Any difference, or an
unreadable cache, triggers a rebuild. The probe catches a replaced file whose size and mtime were
preserved (e.g. `cp -p`), unless it differs only in rows the probe does not read.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import h5py
import numpy as np

from avel_dgl.data.ave import (FEATURE_KEY, N_SEGMENTS, SPECS, VISUAL_FILE, VISUAL_MAP_SHAPE,
                               open_dataset, read_rows)
from avel_dgl import interrupt
from avel_dgl.errors import AvelError
from avel_dgl.outputs import check_free_space, check_room, nearest_existing, write_failure

CACHE_DIR = ".avel_cache"
CACHE_ENV = "AVEL_CACHE_DIR"
CHUNK_VIDEOS = 32  # 32 videos of float64 maps = 64 MB buffer (docs/BENCHMARKS.md)
PROBE_ROWS = 8
FORMAT_VERSION = 2  # bump when the cache's content or attributes change meaning


def _visual_spec(source: Path):
    # Both visual files share one layout; any other name is read as the main visual file.
    return SPECS.get(source.name, SPECS[VISUAL_FILE])


class CacheLocationWarning(UserWarning):
    """The data folder is read-only: its derived files go to the user cache folder."""


_announced: set[Path] = set()  # data folders whose fallback location was already said


def use_cache_dir(folder: str | Path) -> None:
    """Make `folder` the cache folder of this process and of every process it starts (ablate's
    workers): the one writer of CACHE_ENV (runtime.Runtime.for_process calls it)."""
    os.environ[CACHE_ENV] = str(folder)


def cache_dir_in_force() -> Path | None:
    """The cache folder every data folder of this process shares (`use_cache_dir`, or CACHE_ENV
    inherited), or None: each data folder's own (`cache_folder`). The one reader of CACHE_ENV."""
    chosen = os.environ.get(CACHE_ENV)
    return Path(chosen) if chosen else None


def user_cache_dir() -> Path:
    """$XDG_CACHE_HOME/avel-dgl, else ~/.cache/avel-dgl."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "avel-dgl"


def _writable(folder: Path) -> bool:
    """Can files be created in `folder`, or in its nearest existing parent if it is missing?
    (access(2) also reports a read-only file system, even to root.)"""
    folder = nearest_existing(folder)
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def cache_folder(data_dir: str | Path, cache_dir: str | Path | None = None) -> tuple[Path, bool]:
    """The folder for `data_dir`'s derived files (see the module docstring), and whether it is
    shared (then file names carry a hash of their source)."""
    chosen = cache_dir or cache_dir_in_force()
    if chosen is not None:
        return Path(chosen), True
    local = Path(data_dir) / CACHE_DIR
    if _writable(local):
        return local, False
    fallback = user_cache_dir()
    key = Path(data_dir).resolve()
    if key not in _announced:
        _announced.add(key)
        warnings.warn(CacheLocationWarning(
            f"{data_dir}: read-only data folder; its pooled features and sub-event database are cached in "
            f"{fallback} (choose with --cache-dir or {CACHE_ENV})"), stacklevel=2)
    return fallback, True


def cache_file(data_dir: str | Path, name: str, source: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where the derived file `name` of `source` (a file or folder inside `data_dir`) lives."""
    folder, shared = cache_folder(data_dir, cache_dir)
    if not shared:
        return folder / name
    tag = hashlib.sha1(str(Path(source).resolve()).encode()).hexdigest()[:12]
    return folder / f"{Path(name).stem}_{tag}{Path(name).suffix}"


def cache_path(data_dir: str | Path, source_name: str, cache_dir: str | Path | None = None) -> Path:
    """Where the pooled cache of `data_dir/source_name` lives (see the module docstring)."""
    return cache_file(data_dir, f"pooled_{Path(source_name).stem}.h5", Path(data_dir) / source_name, cache_dir)


def _fingerprint(source: Path, dset: h5py.Dataset) -> dict:
    stat = source.stat()
    n = dset.shape[0]
    probe = hashlib.blake2b(digest_size=16)
    for row in np.unique(np.linspace(0, n - 1, PROBE_ROWS).astype(np.int64)) if n else []:
        probe.update(np.ascontiguousarray(dset[row, 0]).tobytes())
    return {
        "format_version": FORMAT_VERSION,
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
        "source_shape": str(tuple(dset.shape)),
        "source_dtype": str(dset.dtype),
        "source_probe": probe.hexdigest(),
    }


def _cache_matches(target: Path, fingerprint: dict, n: int) -> bool:
    if not target.is_file():
        return False
    try:
        with h5py.File(target, "r") as f:
            attrs = {k: f.attrs.get(k) for k in fingerprint}
            shape = f[FEATURE_KEY].shape if FEATURE_KEY in f else None
    except OSError:  # truncated or foreign file: rebuild it
        return False
    recorded = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in attrs.items()}
    return recorded == fingerprint and shape == (n, N_SEGMENTS, VISUAL_MAP_SHAPE[-1])


def _os_reason(error: OSError) -> str:
    return error.strerror or " ".join(str(error).split())


def _non_finite_message(source: Path, block: np.ndarray, means: np.ndarray, start: int) -> str:
    bad = ~np.isfinite(means)
    video, segment = np.unravel_index(np.argmax(bad.any(-1)), bad.shape[:2])
    cell = block[video, segment]
    what = "NaN" if np.isnan(cell).any() else "Inf"
    return (f"{source}: key '{FEATURE_KEY}': expected finite values, found {what} at row "
            f"{start + int(video)}, segment {int(segment)}")


def pool_maps(maps: np.ndarray) -> np.ndarray:
    """Global average pooling (section 3.2): (..., 7, 7, 512) -> (..., 512), the mean of the 49
    cells summed in float64. Non-finite where any cell is. The cache and new videos both use it."""
    cells = VISUAL_MAP_SHAPE[0] * VISUAL_MAP_SHAPE[1]
    return maps.reshape(*maps.shape[:-3], cells, maps.shape[-1]).sum(axis=-2, dtype=np.float64) / cells


def build_pooled_cache(source: Path, target: Path, chunk_videos: int = CHUNK_VIDEOS) -> None:
    """Stream `source` in chunks of videos, average the 7x7 grid, write float32 to `target`.

    Written to a temporary name and renamed, so an interrupted build never leaves a cache behind.
    """
    from avel_dgl.progress import bar

    source, target = Path(source), Path(target)
    if chunk_videos < 1:
        raise AvelError(f"chunk_videos: expected a positive number of videos, found {chunk_videos}")
    with open_dataset(source, _visual_spec(source)) as dset:
        n = dset.shape[0]
        fingerprint = _fingerprint(source, dset)
        # One reused read buffer in the source dtype: read_direct fills it without a copy.
        buffer = np.empty((min(chunk_videos, max(n, 1)), N_SEGMENTS, *VISUAL_MAP_SHAPE), dset.dtype)
        tmp = target.parent / f".{target.name}.{os.getpid()}.tmp"
        folder = nearest_existing(target.parent)
        if not folder.is_dir():
            raise AvelError(f"{folder}: expected a folder for the pooled visual cache, found a file; choose "
                            f"another with --cache-dir or {CACHE_ENV}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            out = h5py.File(tmp, "w")
        except OSError as e:
            raise AvelError(f"{target.parent}: expected a writable cache folder, found an error "
                            f"writing there ({_os_reason(e)}); choose one with --cache-dir or "
                            f"{CACHE_ENV}") from None
        try:  # before any work: a full disk would otherwise show after minutes of reading
            check_free_space(target.parent, n * N_SEGMENTS * VISUAL_MAP_SHAPE[-1] * 4,
                             f"{target}: the pooled cache of {source}", f"choose another with --cache-dir or {CACHE_ENV}")
        except AvelError:
            out.close()
            tmp.unlink(missing_ok=True)
            raise
        try:
            with out:
                pooled = out.create_dataset(FEATURE_KEY, shape=(n, N_SEGMENTS, VISUAL_MAP_SHAPE[-1]),
                                            dtype="float32")
                for start in bar(range(0, n, chunk_videos), desc=f"pooling {source.name}", unit="chunk"):
                    count = min(chunk_videos, n - start)
                    block = buffer[:count]
                    try:
                        dset.read_direct(block, np.s_[start:start + count], np.s_[0:count])
                    except OSError as e:
                        raise AvelError(f"{source}: key '{FEATURE_KEY}': expected readable data, "
                                        f"found a read error near row {start} ({_os_reason(e)})") from None
                    means = pool_maps(block)
                    if not np.isfinite(means).all():
                        raise AvelError(_non_finite_message(source, block, means, start))
                    check_room(target.parent, means.shape[0] * N_SEGMENTS * VISUAL_MAP_SHAPE[-1] * 4)
                    pooled[start:start + count] = means.astype(np.float32)
                    interrupt.check()  # a signal h5py's finalizers dropped still stops the build
                out.attrs.update(fingerprint)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except (OSError, RuntimeError) as e:  # h5py reports some failed writes as RuntimeError
            tmp.unlink(missing_ok=True)
            failure = write_failure(target, e, "no cache was written")
            if failure is None:
                raise
            raise failure from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def ensure_pooled_cache(data_dir: str | Path, source_name: str, cache_dir: str | Path | None = None,
                        chunk_videos: int = CHUNK_VIDEOS) -> tuple[Path, bool]:
    """Make sure a fresh cache of `data_dir/source_name` exists: (its path, whether it was built)."""
    source = Path(data_dir) / source_name
    target = cache_path(data_dir, source_name, cache_dir)
    with open_dataset(source, _visual_spec(source)) as dset:
        fingerprint, n = _fingerprint(source, dset), dset.shape[0]
    if _cache_matches(target, fingerprint, n):
        return target, False
    build_pooled_cache(source, target, chunk_videos)
    return target, True


def pooled_visual(data_dir: str | Path, source_name: str, cache_dir: str | Path | None = None,
                  chunk_videos: int = CHUNK_VIDEOS) -> np.ndarray:
    """The pooled (N, 10, 512) float32 features of `data_dir/source_name`, from the cache.

    The cache is (re)built when missing or when the source changed (see the module docstring).
    """
    target, _ = ensure_pooled_cache(data_dir, source_name, cache_dir, chunk_videos)
    with h5py.File(target, "r") as f:
        return f[FEATURE_KEY][()]


def read_visual_maps(data_dir: str | Path, rows, source_name: str = VISUAL_FILE) -> np.ndarray:
    """Full 7x7 maps of a few videos, (k, 10, 7, 7, 512) float32, in the order of `rows`
    (repeats allowed). Meant for visualisation: k videos cost k * 2 MB (float64 source)."""
    source = Path(data_dir) / source_name
    with open_dataset(source, _visual_spec(source)) as dset:
        return read_rows(dset, rows, str(source)).astype(np.float32)
