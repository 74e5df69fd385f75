"""The exception types the CLI turns into one line on stderr and a non-zero exit: user errors
(AvelError) and a training run stopped by a signal (Interrupted)."""

import signal


class AvelError(Exception):
    """A problem with the user's input (files, options, checkpoints), not a bug.

    The message is a single line naming the file, key or option, and what was expected against
    what was found.
    """

    kind = "error"  # the CLI prints "avel-dgl: <kind>: <message>"
    exit_code = 2


class Interrupted(AvelError):
    """SIGINT or SIGTERM stopped a run. Exit code 128 + signal number (130, 143), as shells do."""

    kind = "interrupted"

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message or f"stopped by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = 128 + signum
