"""Errors the CLI prints as one line, without a traceback."""


class UserFacingError(Exception):
    """An error whose message tells the user what to fix."""
