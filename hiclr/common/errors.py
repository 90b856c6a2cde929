"""The one exception type that reaches the user as a single clear sentence."""


class UserError(Exception):
    """Bad input or environment: the message says what is wrong, where, and what to do.

    Command-line entry points print the message (no traceback unless ``--debug``) and exit 1.
    """
