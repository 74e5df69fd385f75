"""Stopping a command cleanly on SIGINT / SIGTERM.

Inside `interruptible()`, either signal raises `Interrupted` at once: the step in progress is
abandoned (its in-memory state is thrown away; the run continues from the last checkpoint on
disk). Inside `deferred()` (the end-of-epoch writes of checkpoints and metrics, the renames that
put a set of outputs or a folder in place), a signal is held until the block has finished, so the
files on disk always describe one and the same state; this holds in every command, also those
that never enter `interruptible()`.

Python runs a signal handler between any two bytecodes, also inside a finalizer (`__del__`, a
weakref callback: h5py closes its objects in those), where an exception is printed as
"Exception ignored in ..." and dropped. Inside `interruptible()` such a dropped Interrupted is
caught by `sys.unraisablehook` and remembered: loops call `check()`, which raises it, and the
block raises it when it ends. `stoppable(command, outcome)` is the whole behaviour of a command other than train (one
line `avel-dgl: interrupted: SIGINT: <command> stopped; <outcome>`, exit 130 or 143), for
make-synthetic, check-data, extract and localize alike; train and ablate, which say what they
kept only when they stop, word it through `stopped`.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager

from avel_dgl.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_deferring = False
_pending: int | None = None
_unseen: int | None = None  # a signal whose Interrupted a finalizer dropped


def _handler(signum, frame):
    global _pending
    if _deferring:
        _pending = signum
        return
    raise Interrupted(signum)


def _dropped(unraisable, previous) -> None:
    """sys.unraisablehook inside `interruptible()`: an Interrupted that a finalizer dropped is
    remembered (and not printed); anything else goes to the previous hook."""
    global _unseen
    if isinstance(unraisable.exc_value, Interrupted):
        _unseen = unraisable.exc_value.signum
    else:
        previous(unraisable)


def check() -> None:
    """Raise the Interrupted of a signal whose exception a finalizer dropped (see the module
    docstring); loops that run long call it once per step."""
    global _unseen
    if _unseen is not None:
        signum, _unseen = _unseen, None
        raise Interrupted(signum)


@contextmanager
def interruptible():
    """Install the handlers for the duration of the block, then restore the previous ones.
    Python only delivers signals to the main thread; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _unseen
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    previous_hook, sys.unraisablehook = sys.unraisablehook, lambda u: _dropped(u, previous_hook)
    _unseen = None
    try:
        yield
        check()  # a signal whose exception a finalizer dropped stops the command all the same
    finally:
        _unseen = None
        sys.unraisablehook = previous_hook
        for s, h in previous.items():
            signal.signal(s, h)


@contextmanager
def stoppable(command: str, outcome: str):
    """Run the block `interruptible()`; SIGINT or SIGTERM (or a KeyboardInterrupt raised before
    the handlers were installed) stops it with one line: "SIGINT: <command> stopped; <outcome>"
    (exit 130 or 143). `outcome` says what is on disk and how to go on, e.g. "nothing was
    written; run the same command again". The block cleans up after itself on the way out
    (finally / except BaseException), as on any error."""
    try:
        with interruptible():
            yield
    except (Interrupted, KeyboardInterrupt) as e:
        raise stopped(getattr(e, "signum", signal.SIGINT), command, outcome) from None


def stopped(signum: int, command: str, outcome: str) -> Interrupted:
    """The one wording of a command stopped by a signal: "SIGINT: <command> stopped; <outcome>"
    (`stoppable`; train and ablate word their outcome when they stop)."""
    return Interrupted(signum, f"{signal.Signals(signum).name}: {command} stopped; {outcome}")


@contextmanager
def deferred():
    """Hold SIGINT/SIGTERM until the block ends, then act on the last one held: inside
    `interruptible()` raise Interrupted; outside it (a command that installs no handlers: report,
    predict) send the signal again, so the process's own handling (KeyboardInterrupt, or SIGTERM's
    exit) comes after the block instead of inside it. Nested blocks hold them until the outermost
    one ends."""
    global _deferring, _pending
    outer = _deferring
    if not outer:
        _pending = None  # a signal held by a block that ended in an exception is not replayed
    installed = {}  # the handlers this block put in place of the process's own, to restore
    if not outer and threading.current_thread() is threading.main_thread():
        installed = {s: signal.signal(s, _handler) for s in SIGNALS if signal.getsignal(s) is not _handler}
    _deferring = True
    try:
        yield
    finally:
        _deferring = outer
        for s, previous in installed.items():
            signal.signal(s, previous)
    if not outer and _pending is not None:
        signum, _pending = _pending, None
        if not installed:
            raise Interrupted(signum)
        signal.raise_signal(signum)  # handled as it would have been (raises, exits, or is ignored)
