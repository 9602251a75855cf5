"""The one error type users see: a single line naming what was wrong and where."""

from contextlib import contextmanager


class SkinternError(Exception):
    """Bad input or an impossible request. The CLI prints it on one line and exits with 2."""


@contextmanager
def in_field(key: str, error: type[SkinternError] = SkinternError):
    """An `error` raised inside names the config field `key` it came from (code below the config does not know it)."""
    try:
        yield
    except error as e:
        raise SkinternError(f"{key}: {e}") from None
