"""The exception types the CLI turns into one line on stderr and a non-zero exit: user errors
(AvelError; ConfigError for a config value, keyed by its field) and a training run stopped by a
signal (Interrupted); and ConfigWarning, a config value that may not work."""

import signal


def with_article(noun: str) -> str:
    """'a run', 'an ablate grid', 'a TCN': a noun with its indefinite article (by its first letter), for messages."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


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


class _KeyedByField:
    """A problem with one config field, `field` its dotted name ("train.lr"). The text is
    "<field>: <problem>" and names fields by their dotted names only, so that the CLI can word
    each as the flag that sets it (cli/options.py)."""

    def __init__(self, field: str, problem: str):
        super().__init__(field, problem)  # args: what pickling needs to rebuild it
        self.field, self.problem = field, problem

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


class ConfigError(_KeyedByField, AvelError):
    """A config value that cannot work, e.g. ConfigError("train.lr", "expected a positive number, found -1.0")."""


class ConfigWarning(_KeyedByField, UserWarning):
    """A config value that may not work (warnings.warn(ConfigWarning(field, problem)))."""
