"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class HRankError(Exception):
    """A user-facing problem; the message is one line that says what is wrong and what to do about it."""
