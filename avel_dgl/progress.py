"""Progress bars for the steps that can take long on full-size data (pooling the visual cache,
predicting, evaluating, reports, FAMs): tqdm on stderr, shown only on a terminal, and off for the
whole process after `set_quiet()`, which `runtime.Runtime.for_process` calls with each command's
--quiet (its one caller). Training keeps its own per-run switch."""

from __future__ import annotations

from tqdm import tqdm

_quiet = False


def set_quiet(quiet: bool = True) -> None:
    global _quiet
    _quiet = quiet


def shown() -> bool:
    """False after set_quiet(); else bars appear when stderr is a terminal."""
    return not _quiet


def bar(iterable=None, **options) -> tqdm:
    """A tqdm bar that disappears when done (leave=False), disabled by --quiet or off a terminal."""
    return tqdm(iterable, leave=False, disable=True if _quiet else None, **options)
