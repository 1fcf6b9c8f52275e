"""One reading of a logged scalar, for every metric consumer (trainer guards, curriculum metrics)."""

from __future__ import annotations

import math
from typing import Any


def finite_number(value: Any) -> float | None:
    """A finite float from a Python/numpy/torch scalar; ``None`` for anything else (strings, arrays,
    NaN, inf).

    verl's dapo reward manager logs ``overlong_reward``/``overlong`` as 0-d torch tensors.

    >>> finite_number(3), finite_number(True), finite_number(float("nan")), finite_number("1")
    (3.0, 1.0, None, None)
    """
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()  # numpy scalars, 0-d arrays and 1-element tensors
        except (ValueError, RuntimeError):
            return None
    if isinstance(value, bool | int | float):
        number = float(value)
        return number if math.isfinite(number) else None
    return None
