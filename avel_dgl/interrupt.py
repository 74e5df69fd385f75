"""Stopping a training run cleanly on SIGINT / SIGTERM.

Inside `interruptible()`, either signal raises `Interrupted` at once: the step in progress is
abandoned (its in-memory state is thrown away; the run continues from the last checkpoint on
disk). Inside `deferred()` (the end-of-epoch writes of checkpoints and metrics), a signal is held
until the block has finished, so the files on disk always describe one and the same epoch.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

from avel_dgl.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_deferring = False
_pending: int | None = None


def _handler(signum, frame):
    global _pending
    if _deferring:
        _pending = signum
        return
    raise Interrupted(signum)


@contextmanager
def interruptible():
    """Install the handlers for the duration of the block, then restore the previous ones.
    Python only delivers signals to the main thread; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextmanager
def deferred():
    """Hold SIGINT/SIGTERM until the block ends, then raise Interrupted for the last one held.
    Nested blocks hold them until the outermost one ends."""
    global _deferring, _pending
    outer = _deferring
    if not outer:
        _pending = None  # a signal held by a block that ended in an exception is not replayed
    _deferring = True
    try:
        yield
    finally:
        _deferring = outer
    if not outer and _pending is not None:
        signum, _pending = _pending, None
        raise Interrupted(signum)
