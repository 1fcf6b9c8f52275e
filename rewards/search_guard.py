"""Search-health guards of the reward: closed-book answers and answers found in no observation.

Two hacks search agents learn when nothing stops them: answering without searching (a guessed,
"closed-book" answer that happens to score), and answering with text that no retrieved document
contains. Both guards are off by default; when on, their keys are added to every result (so they
reach ``reward/<key>/mean`` on the training curves and the viewer's reward table).

* ``closed_book`` (RAMP rows only; a row answered, ``<answer>`` closed, with no ``<search>``):

  - ``off`` (default): nothing;
  - ``flag``: the key ``closed_book`` (1.0 for such an answer, else 0.0) is added, the score kept;
  - ``zero``: as ``flag``, and the answer part of the score is removed
    (``score = format_weight · format_ok``, ``acc = 0``);
  - ``penalty``: as ``flag``, and ``closed_book_penalty`` is subtracted from the score
    (``acc`` kept: the answer may be right, the reward says how it was reached).

* ``check_grounding`` (every row): ``ungrounded_fills`` counts the answer's fills (one per mask
  for RAMP, the whole answer for QA) whose words occur in no ``<information>`` observation of the
  response (case, punctuation and spacing ignored); ``ungrounded_answer`` is 1.0 when there is at
  least one. A correct but ungrounded answer is the hack signal: it came from memory or a guess,
  not from the documents. Logged only; the score is unchanged.

>>> r = "<think>t</think><answer>Paris</answer>"
>>> guard = SearchGuard(closed_book="zero", check_grounding=True)
>>> out = guard.apply({"score": 1.0, "acc": 1.0, "format_ok": 1.0, "num_searches": 0}, r, "ramp", ["Paris"], 0.0)
>>> out["score"], out["acc"], out["closed_book"], out["ungrounded_fills"], out["ungrounded_answer"]
(0.0, 0.0, 1.0, 1, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from masksearch.core.grammar import INFORMATION, parse_turns
from masksearch.rewards.answer import answer_words, mentions

__all__ = ["CLOSED_BOOK_MODES", "GUARD_KEYS", "SearchGuard", "observations_of", "ungrounded_fills"]

#: Values of ``closed_book``.
CLOSED_BOOK_MODES = ("off", "flag", "zero", "penalty")
#: Every key a guard may add (the viewer shows them with the reward parts).
GUARD_KEYS = ("closed_book", "ungrounded_fills", "ungrounded_answer")


def observations_of(response: str) -> list[str]:
    """The ``<information>`` blocks of a response (what the environment returned).

    >>> observations_of("<search>q</search><information>Doc 1(Title: X) y</information><answer>a</answer>")
    ['Doc 1(Title: X) y']
    """
    return [turn.content for turn in parse_turns(response) if turn.kind == INFORMATION.name]


def ungrounded_fills(fills: Sequence[str], observations: Sequence[str]) -> int:
    """How many fills with words are :func:`~masksearch.rewards.answer.mentions`-ed in no observation.

    >>> ungrounded_fills(["Eiffel Tower", "1889", "Paris!"], ["The Eiffel  tower (1887-1889)"])
    1
    >>> ungrounded_fills(["", "x"], [])
    1
    """
    text = " ".join(observations)
    return sum(1 for fill in fills if answer_words(fill) and not mentions(text, fill))


@dataclass(frozen=True)
class SearchGuard:
    """The two guards' settings (see the module docstring); checked at construction.

    Args:
        closed_book: ``off`` | ``flag`` | ``zero`` | ``penalty``.
        closed_book_penalty: subtracted from the score in ``penalty`` mode (finite, >= 0).
        check_grounding: add ``ungrounded_fills`` and ``ungrounded_answer``.
    """

    closed_book: str = "off"
    closed_book_penalty: float = 0.5
    check_grounding: bool = False

    def __post_init__(self) -> None:
        if self.closed_book not in CLOSED_BOOK_MODES:
            raise ValueError(
                f"closed_book={self.closed_book!r}: choose one of {', '.join(CLOSED_BOOK_MODES)}"
            )
        penalty = self.closed_book_penalty
        if (
            isinstance(penalty, bool)
            or not isinstance(penalty, int | float)
            or not math.isfinite(penalty)
            or penalty < 0
        ):
            raise ValueError(f"closed_book_penalty must be a finite number >= 0, got {penalty!r}")

    @property
    def on(self) -> bool:
        return self.closed_book != "off" or self.check_grounding

    def apply(
        self,
        result: dict[str, Any],
        response: str,
        kind: str,
        fills: Sequence[str] | None,
        format_part: float,
    ) -> dict[str, Any]:
        """Add the guards' keys to ``result`` (a :func:`~masksearch.rewards.hybrid.hybrid_score` dict)
        and apply the closed-book mode; ``fills`` is None when the response has no answer.

        Args:
            result: the reward dict (``score``, ``acc``, ``num_searches``... ), changed in place.
            response: the response (observations included).
            kind: ``"ramp"`` or ``"qa"``.
            fills: the answer's fills (RAMP: one per mask; QA: the answer), None without an answer.
            format_part: ``format_weight · format_ok``, the score left in ``zero`` mode.

        Returns:
            ``result``.
        """
        if self.closed_book != "off":
            closed = kind == "ramp" and fills is not None and int(result.get("num_searches") or 0) == 0
            result["closed_book"] = float(closed)
            if closed and self.closed_book == "zero":
                result["score"] = float(format_part)
                result["acc"] = 0.0
            elif closed and self.closed_book == "penalty":
                result["score"] = float(result["score"]) - float(self.closed_book_penalty)
        if self.check_grounding:
            missing = ungrounded_fills(fills, observations_of(response)) if fills else 0
            result["ungrounded_fills"] = missing
            result["ungrounded_answer"] = float(missing > 0)
        return result
