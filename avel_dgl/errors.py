"""The one exception type for user errors: the CLI prints it as one line and exits non-zero."""


class AvelError(Exception):
    """A problem with the user's input (files, options, checkpoints), not a bug.

    The message is a single line naming the file, key or option, and what was expected against
    what was found.
    """
