"""A process's context is set up in one place (issue 24): `Runtime.for_process` turns the shared
options (--device, --kernel, --quiet, --cache-dir) into the Runtime and into the process state
that goes with it (torch threads, progress bars, the cache folder its children inherit), with
torchrun's rank and world size from the one reader of its environment."""

from __future__ import annotations

import os

import torch

from avel_dgl import progress
from avel_dgl.data import cache
from avel_dgl.runtime import Runtime


def test_for_process_sets_up_the_process_and_returns_its_runtime(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, "")  # recorded, so the variable is restored after the test
    monkeypatch.delenv(cache.CACHE_ENV)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    threads = torch.get_num_threads()
    try:
        made = Runtime.for_process("cpu", "torch", quiet=True, cache_dir=tmp_path / "c", processes=2)
        assert made == Runtime(torch.device("cpu"), "torch", 1, 2)
        assert made.quiet and made.cache_dir == tmp_path / "c"
        assert not made.is_main
        assert made.threads == torch.get_num_threads() == max(1, len(os.sched_getaffinity(0)) // 2)
        assert not progress.shown() and progress.bar(range(2)).disable
        # the cache folder of this process and of those it starts (they inherit the environment)
        assert os.environ[cache.CACHE_ENV] == str(tmp_path / "c")
        assert cache.cache_folder(tmp_path / "data") == (tmp_path / "c", True)

        # The next command of the process: bars on again, the cache folder still in force; a
        # command that runs no network gets no device and leaves the threads as they are.
        torch.set_num_threads(1)
        plain = Runtime.for_process(device=None)
        assert plain == Runtime(None, None, 1, 2)
        assert not plain.quiet and plain.cache_dir == tmp_path / "c"
        assert progress.shown() and torch.get_num_threads() == 1
        # extract: a device, but no eq 12 kernel
        assert Runtime.for_process("cpu", kernel=None).kernel is None
    finally:
        progress.set_quiet(False)
        torch.set_num_threads(threads)
