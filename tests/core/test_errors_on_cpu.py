"""core.errors.one_line: a library's multi-line message as one line, cut where asked."""

from __future__ import annotations

import pytest

from masksearch.core.errors import one_line


@pytest.mark.parametrize(
    ("exc", "kwargs", "expected"),
    [
        (ValueError("bad\n  value\tthere "), {}, "bad value there"),  # every whitespace run -> one space
        (OSError("x" * 400), {}, "x" * 300),  # default cut: 300 characters
        (OSError("x" * 400), {"limit": 10}, "x" * 10),
        (OSError("x" * 400), {"limit": None}, "x" * 400),  # None: the whole message
        ("not an exception\n", {}, "not an exception"),  # anything with a str()
        (TimeoutError("took\ntoo long"), {"typed": True}, "TimeoutError: took too long"),
        (TimeoutError(), {"typed": True}, "TimeoutError"),  # empty message: the type alone
        (KeyError("k" * 50), {"limit": 5, "typed": True}, "KeyError: 'kkkk"),  # the cut is before the type
    ],
)
def test_one_line(exc, kwargs, expected):
    assert one_line(exc, **kwargs) == expected
