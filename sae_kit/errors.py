"""The one exception type the CLI turns into a single clear line instead of a traceback."""


class SaeKitError(Exception):
    """A problem with the user's input or environment.

    The message says what was wrong and how to mend it, on one line.
    """
