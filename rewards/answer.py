"""Rule-based answer rewards: exact match, token F1, token recall, recall with a length penalty.

Every reward has the signature ``(prediction: str, golds: list[str]) -> float`` with a value in
``[0, 1]`` and takes the **max over gold aliases**. Both sides go through SQuAD-style
normalisation first (:func:`normalize_answer`): lowercase, punctuation removed, articles
(a/an/the) removed, whitespace collapsed. Tokens are the whitespace-separated words of the
normalised text; overlaps count tokens with multiplicity (``Counter`` intersection).

Formulas, for a prediction ``p`` and one gold ``g`` (token multisets ``P`` and ``G``)::

    em(p, g)     = 1 if norm(p) == norm(g) else 0
    recall(p, g) = |P ∩ G| / |G|                      (MaskSearch's token-level recall)
    f1(p, g)     = 2 · prec · recall / (prec + recall),   prec = |P ∩ G| / |P|
    recall_lp(p, g) = recall(p, g) · min(1, max_ratio · |G| / |P|)

When a side normalises to nothing (e.g. the gold is just "the"), token metrics fall back to
``float(norm(p) == norm(g))``, as the SQuAD script does. Anything that is not a string is turned
into one (``None`` and NaN become ""), so no input raises.

>>> exact_match("The Eiffel Tower!", ["eiffel tower"])
1.0
>>> token_recall("Paris, capital of France", ["Paris"])
1.0
>>> recall_length_penalty("Paris, capital of France", ["Paris"])  # 4 tokens vs 1, max_ratio 2
0.5
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections.abc import Iterable, Mapping
from typing import Protocol

__all__ = [
    "AnswerReward",
    "RecallLengthPenalty",
    "answer_words",
    "as_gold_list",
    "as_text",
    "exact_match",
    "make_recall_length_penalty",
    "mentions",
    "normalize_answer",
    "recall_length_penalty",
    "token_f1",
    "token_recall",
]


class AnswerReward(Protocol):
    """What every answer reward is: ``(prediction, golds) -> float in [0, 1]``."""

    def __call__(self, prediction: str, golds: list[str]) -> float: ...


_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
_PUNCT_TABLE = str.maketrans("", "", string.punctuation)
_WORD_RE = re.compile(r"\w+")


def as_text(value: object) -> str:
    """Any value as text: strings unchanged, ``None``/NaN -> "", bytes decoded, others ``str()``.

    >>> as_text(None), as_text(1990), as_text(float("nan"))
    ('', '1990', '')
    """
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    try:
        return str(value)
    except Exception:
        return ""


def normalize_answer(text: object) -> str:
    """SQuAD normalisation: lowercase, drop punctuation and articles, collapse whitespace.

    Idempotent: ``normalize_answer(normalize_answer(x)) == normalize_answer(x)``.

    >>> normalize_answer("  The  Beatles' 'Abbey Road'! ")
    'beatles abbey road'
    """
    s = as_text(text)
    # Short strings are cached (a gold is normalised once per rollout of its prompt, and
    # predictions repeat); long ones are not, so the cache stays small.
    return _normalize_cached(s) if len(s) <= 256 else _normalize_str(s)


def _normalize_str(text: str) -> str:
    s = text.lower().translate(_PUNCT_TABLE)
    # Article removal can only expose whitespace, never a new article, so one pass suffices.
    return " ".join(_ARTICLES_RE.sub(" ", s).split())


def answer_words(text: object) -> str:
    """Lowercased word runs (``\\w+``) joined by single spaces: how :func:`mentions` reads both sides.

    Not :func:`normalize_answer`, which is an equality test: here punctuation separates words
    (so ``1889`` is found in ``(1887-1889)``) and articles stay.

    >>> answer_words(" The 7.7-km  Road!")
    'the 7 7 km road'
    """
    return " ".join(_WORD_RE.findall(as_text(text).lower()))


def mentions(text: object, answer: object) -> bool:
    """Whether ``answer`` occurs in ``text`` as a whole-word run, case, punctuation and spacing
    ignored; an answer with no words is never mentioned.

    The one "is this answer in that document" check: the reward's grounding guard, the rules
    teacher's observer and the viewer's "answer was in a document" flag all use it.

    >>> mentions("Doc 1(Title: X) founded in 1915.", "15"), mentions("in 1915.", "1915"), mentions("x", "!")
    (False, True, False)
    """
    needle = answer_words(answer)
    return bool(needle) and f" {needle} " in f" {answer_words(text)} "


# Keys under which datasets store gold answers when ground_truth is a dict (Search-R1: "target").
_GOLD_KEYS = ("target", "answers", "answer", "ground_truth", "golds", "spans")


def as_gold_list(ground_truth: object) -> list[str]:
    """Flatten whatever a dataset stores as gold into a list of non-empty strings.

    Accepts a string, a list/tuple/set, a numpy array (verl passes those), nested lists, or a
    dict holding one of ``target``/``answers``/``answer``/``ground_truth``/``golds``/``spans``.
    ``None``, NaN and blank items are dropped; numbers become strings.

    >>> import numpy as np
    >>> as_gold_list(np.array(["Paris", None, 3], dtype=object))
    ['Paris', '3']
    >>> as_gold_list({"target": ["a", ["b"]]})
    ['a', 'b']
    """
    if type(ground_truth) is list and all(type(g) is str and g.strip() for g in ground_truth):
        return [g.strip() for g in ground_truth]  # fast path for the common case
    out: list[str] = []
    _flatten_into(ground_truth, out, depth=0)
    return out


def _flatten_into(value: object, out: list[str], depth: int) -> None:
    if depth > 8:  # guard against self-referencing containers
        return
    if isinstance(value, Mapping):
        for key in _GOLD_KEYS:
            if key in value:
                _flatten_into(value[key], out, depth + 1)
                return
        return
    if isinstance(value, str | bytes | bytearray) or not isinstance(value, Iterable):
        text = as_text(value).strip()
        if text:
            out.append(text)
        return
    try:
        items = list(value)  # numpy arrays, tuples, sets, generators
    except Exception:
        return
    for item in items:
        _flatten_into(item, out, depth + 1)


def _golds(golds: object) -> list[str]:
    return (
        golds if isinstance(golds, list) and all(isinstance(g, str) for g in golds) else as_gold_list(golds)
    )


def _overlap(pred_tokens: list[str], gold_tokens: list[str]) -> int:
    """``|pred ∩ gold|`` as multisets (same as ``Counter`` intersection, faster on short lists)."""
    if len(gold_tokens) == 1:
        return int(gold_tokens[0] in pred_tokens)
    counts: dict[str, int] = {}
    for token in pred_tokens:
        counts[token] = counts.get(token, 0) + 1
    common = 0
    for token in gold_tokens:
        left = counts.get(token, 0)
        if left:
            counts[token] = left - 1
            common += 1
    return common


def exact_match(prediction: str, golds: list[str]) -> float:
    """1.0 if the normalised prediction equals a normalised gold alias, else 0.0.

    Args:
        prediction: the extracted answer.
        golds: gold aliases (anything :func:`as_gold_list` accepts).

    Returns:
        ``max_g [norm(prediction) == norm(g)]``; 0.0 when there is no gold.

    >>> exact_match("an apple", ["Apple", "pear"])
    1.0
    """
    pred = normalize_answer(prediction)
    return max((float(pred == normalize_answer(g)) for g in _golds(golds)), default=0.0)


def _best(prediction: str, golds: list[str], metric) -> float:
    pred_tokens = normalize_answer(prediction).split()
    best = 0.0
    for gold in _golds(golds):
        gold_tokens = normalize_answer(gold).split()
        if not pred_tokens or not gold_tokens:
            score = float(pred_tokens == gold_tokens)
        else:
            score = metric(pred_tokens, gold_tokens)
        best = max(best, score)
        if best >= 1.0:
            break
    return best


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    common = _overlap(pred_tokens, gold_tokens)
    if common == 0:
        return 0.0
    precision = common / len(pred_tokens)
    recall = common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _recall(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    return _overlap(pred_tokens, gold_tokens) / len(gold_tokens)


def token_f1(prediction: str, golds: list[str]) -> float:
    """Token-level F1 (SQuAD), max over gold aliases.

    ``f1 = 2·P·R/(P+R)`` with ``P = |pred ∩ gold|/|pred|`` and ``R = |pred ∩ gold|/|gold|``.

    >>> round(token_f1("Barack Obama Jr", ["Barack Obama"]), 3)
    0.8
    """
    return _best(prediction, golds, _f1)


def token_recall(prediction: str, golds: list[str]) -> float:
    """Token-level recall (MaskSearch's metric): share of gold tokens present in the prediction.

    ``recall = |pred ∩ gold| / |gold|``, max over gold aliases. Rewards padding, which is why
    :func:`recall_length_penalty` exists.

    >>> token_recall("Barack Obama", ["Barack Hussein Obama"])
    0.6666666666666666
    """
    return _best(prediction, golds, _recall)


class RecallLengthPenalty:
    """Token recall times a length penalty for predictions much longer than the gold.

    ``score = recall(p, g) · min(1, max_ratio · |g| / |p|)`` (token counts after
    normalisation), max over gold aliases. A prediction up to ``max_ratio`` times the gold's
    length is not penalised; beyond that the reward falls as ``1/|p|``, so listing many
    candidates no longer pays.

    A callable class rather than a closure so that it pickles (Ray) and keeps a stable
    ``__name__`` for metrics.

    Args:
        max_ratio: allowed length ratio |prediction| / |gold| before the penalty starts (> 0).

    >>> RecallLengthPenalty(max_ratio=1.0)("Paris France", ["Paris"])
    0.5
    """

    __name__ = "recall_length_penalty"

    def __init__(self, max_ratio: float = 2.0) -> None:
        try:
            ratio = float(max_ratio)
        except (TypeError, ValueError):
            raise ValueError(f"max_ratio must be a positive number, got {max_ratio!r}") from None
        if not math.isfinite(ratio) or ratio <= 0:
            raise ValueError(f"max_ratio must be a positive number, got {max_ratio!r}")
        self.max_ratio = ratio

    def _metric(self, pred_tokens: list[str], gold_tokens: list[str]) -> float:
        penalty = min(1.0, self.max_ratio * len(gold_tokens) / len(pred_tokens))
        return _recall(pred_tokens, gold_tokens) * penalty

    def __call__(self, prediction: str, golds: list[str]) -> float:
        return _best(prediction, golds, self._metric)

    def __repr__(self) -> str:
        return f"RecallLengthPenalty(max_ratio={self.max_ratio})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RecallLengthPenalty) and other.max_ratio == self.max_ratio

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.max_ratio))


def make_recall_length_penalty(max_ratio: float = 2.0) -> RecallLengthPenalty:
    """Factory for :class:`RecallLengthPenalty` (validates ``max_ratio``).

    >>> make_recall_length_penalty(3.0).max_ratio
    3.0
    """
    return RecallLengthPenalty(max_ratio=max_ratio)


#: The default-parameter instance, registered as ``recall_length_penalty``.
recall_length_penalty = RecallLengthPenalty()


_normalize_cached = functools.lru_cache(maxsize=1 << 14)(_normalize_str)
