"""The pooled visual cache: values, chunked streaming with bounded memory, freshness, atomicity,
NaN/Inf detection, location, and reading full maps."""

from __future__ import annotations

import os
import tracemalloc

import h5py
import numpy as np
import pytest
from ave_files import write_h5

from avel_dgl.data import cache
from avel_dgl.data.ave import FEATURE_KEY, VISUAL_FILE
from avel_dgl.data.cache import (build_pooled_cache, cache_path, ensure_pooled_cache, pooled_visual,
                                 read_visual_maps)
from avel_dgl.errors import AvelError

VIDEO_BYTES_F64 = 10 * 7 * 7 * 512 * 8  # one video's maps in float64: 2 MB


@pytest.fixture(autouse=True)
def _no_cache_env(monkeypatch):
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)


def _maps(n, dtype, seed=0):
    return np.random.default_rng(seed).random((n, 10, 7, 7, 512)).astype(dtype) * 10


def _write_visual(folder, maps):
    folder.mkdir(parents=True, exist_ok=True)
    write_h5(folder / VISUAL_FILE, maps, FEATURE_KEY)
    return folder


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunk_videos", [1, 2, 5, 100])
def test_pooled_values_are_the_grid_mean(tmp_path, dtype, chunk_videos):
    maps = _maps(5, dtype)
    folder = _write_visual(tmp_path, maps)
    pooled = pooled_visual(folder, VISUAL_FILE, chunk_videos=chunk_videos)
    assert pooled.dtype == np.float32 and pooled.shape == (5, 10, 512)
    expected = maps.astype(np.float64).mean(axis=(2, 3))
    np.testing.assert_allclose(pooled, expected, rtol=1e-6)


def test_unchanged_source_reuses_the_cache(tmp_path):
    folder = _write_visual(tmp_path, _maps(3, np.float32))
    target, built = ensure_pooled_cache(folder, VISUAL_FILE)
    assert built and target == folder / ".avel_cache" / "pooled_visual_feature.h5"
    stamp = target.stat().st_mtime_ns
    assert ensure_pooled_cache(folder, VISUAL_FILE) == (target, False)
    assert target.stat().st_mtime_ns == stamp


def test_rewritten_source_triggers_a_rebuild(tmp_path):
    folder = _write_visual(tmp_path, _maps(3, np.float32, seed=0))
    first = pooled_visual(folder, VISUAL_FILE)
    new = _maps(3, np.float32, seed=1)
    _write_visual(folder, new)
    stat = (folder / VISUAL_FILE).stat()
    os.utime(folder / VISUAL_FILE, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # mtime moves on
    second = pooled_visual(folder, VISUAL_FILE)
    assert not np.allclose(first, second)
    np.testing.assert_allclose(second, new.astype(np.float64).mean(axis=(2, 3)), rtol=1e-6)


def test_content_probe_catches_a_change_with_size_and_mtime_preserved(tmp_path):
    maps = _maps(4, np.float32)
    folder = _write_visual(tmp_path, maps)
    source = folder / VISUAL_FILE
    pooled_visual(folder, VISUAL_FILE)
    stat = source.stat()
    with h5py.File(source, "r+") as f:  # same size: overwrite values in place
        f[FEATURE_KEY][3, 0] = 0.0
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert source.stat().st_size == stat.st_size and source.stat().st_mtime_ns == stat.st_mtime_ns
    target, built = ensure_pooled_cache(folder, VISUAL_FILE)
    assert built
    assert np.all(pooled_visual(folder, VISUAL_FILE)[3, 0] == 0)


def test_unreadable_cache_is_rebuilt(tmp_path):
    folder = _write_visual(tmp_path, _maps(2, np.float32))
    target, _ = ensure_pooled_cache(folder, VISUAL_FILE)
    target.write_bytes(b"garbage")
    assert ensure_pooled_cache(folder, VISUAL_FILE) == (target, True)
    assert pooled_visual(folder, VISUAL_FILE).shape == (2, 10, 512)


@pytest.mark.parametrize("value, name", [(np.nan, "NaN"), (np.inf, "Inf"), (-np.inf, "Inf")])
def test_non_finite_maps_fail_while_streaming_and_leave_no_cache(tmp_path, value, name):
    maps = _maps(5, np.float64)
    maps[4, 7, 6, 2, 300] = value  # in the last chunk of 2, after two chunks were written
    folder = _write_visual(tmp_path, maps)
    with pytest.raises(AvelError) as error:
        pooled_visual(folder, VISUAL_FILE, chunk_videos=2)
    message = str(error.value)
    assert message == (f"{folder / VISUAL_FILE}: key 'avadataset': expected finite values, "
                       f"found {name} at row 4, segment 7")
    assert list((folder / ".avel_cache").iterdir()) == []  # neither cache nor temporary file


def test_streaming_memory_is_bounded_by_the_chunk(tmp_path):
    n = 16
    folder = _write_visual(tmp_path, _maps(n, np.float64))
    source = folder / VISUAL_FILE

    def peak_bytes(chunk_videos, name):
        tracemalloc.start()
        try:
            build_pooled_cache(source, tmp_path / name, chunk_videos=chunk_videos)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small = peak_bytes(2, "small.h5")
    whole = peak_bytes(n, "whole.h5")
    assert small < 3 * VIDEO_BYTES_F64  # a 2-video buffer plus small change, not the 32 MB file
    assert whole >= n * VIDEO_BYTES_F64  # the measurement does see a whole-file read
    with h5py.File(tmp_path / "small.h5") as a, h5py.File(tmp_path / "whole.h5") as b:
        np.testing.assert_array_equal(a[FEATURE_KEY][()], b[FEATURE_KEY][()])


def test_cache_dir_from_environment_and_argument(tmp_path, monkeypatch):
    first = _write_visual(tmp_path / "a", _maps(2, np.float32, seed=0))
    second = _write_visual(tmp_path / "b", _maps(2, np.float32, seed=1))
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "env_cache"))
    a, _ = ensure_pooled_cache(first, VISUAL_FILE)
    b, _ = ensure_pooled_cache(second, VISUAL_FILE)
    assert a.parent == b.parent == tmp_path / "env_cache" and a != b  # one cache per source
    assert not (first / ".avel_cache").exists()
    assert not np.allclose(pooled_visual(first, VISUAL_FILE), pooled_visual(second, VISUAL_FILE))
    c, _ = ensure_pooled_cache(first, VISUAL_FILE, cache_dir=tmp_path / "arg_cache")
    assert c.parent == tmp_path / "arg_cache" and c == cache_path(first, VISUAL_FILE, tmp_path / "arg_cache")


def test_unwritable_cache_dir_is_one_line(tmp_path):
    folder = _write_visual(tmp_path / "data", _maps(1, np.float32))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(AvelError) as error:
        pooled_visual(folder, VISUAL_FILE, cache_dir=blocker / "cache")
    message = str(error.value)  # the file in the way is named as such (it used to be "File exists")
    assert message == (f"{blocker}: expected a folder for the pooled visual cache, found a file; choose another "
                       f"with --cache-dir or {cache.CACHE_ENV}")


def test_bad_chunk_size(tmp_path):
    folder = _write_visual(tmp_path, _maps(1, np.float32))
    with pytest.raises(AvelError, match="chunk_videos: expected a positive number of videos, found 0"):
        build_pooled_cache(folder / VISUAL_FILE, tmp_path / "x.h5", chunk_videos=0)


def test_read_visual_maps(tmp_path):
    maps = _maps(5, np.float64)
    folder = _write_visual(tmp_path, maps)
    out = read_visual_maps(folder, [4, 1, 4])
    assert out.dtype == np.float32 and out.shape == (3, 10, 7, 7, 512)
    np.testing.assert_array_equal(out, maps[[4, 1, 4]].astype(np.float32))
    assert read_visual_maps(folder, []).shape == (0, 10, 7, 7, 512)
    with pytest.raises(AvelError, match=r"rows: expected indices in \[0, 5\) .* found 5"):
        read_visual_maps(folder, [0, 5])
