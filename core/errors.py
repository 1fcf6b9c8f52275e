"""Errors the CLI prints as one line, without a traceback."""


class UserFacingError(Exception):
    """An error whose message tells the user what to fix."""


def one_line(exc: object, limit: int | None = 300, *, typed: bool = False) -> str:
    """``str(exc)`` with every run of whitespace (newlines too) as one space, cut at ``limit``
    characters (``None``: whole): a library's multi-line message as a one-line error or metric.

    ``typed`` puts the exception's class name in front (``"TimeoutError: …"``; the name alone when
    the message is empty), for messages whose reader cannot see the type otherwise.
    """
    text = " ".join(str(exc).split())[:limit]
    if not typed:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
