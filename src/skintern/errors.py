"""The one error type users see: a single line naming what was wrong and where."""


class SkinternError(Exception):
    """Bad input or an impossible request. The CLI prints it on one line and exits with 2."""
