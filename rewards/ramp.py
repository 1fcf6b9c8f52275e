"""RAMP (Retrieval-Augmented Mask Prediction) answers: read the fills, score them span by span.

A RAMP sample masks ``k`` spans of a passage with the literal token ``[mask]``; the ground truth
is the list of masked spans in mask order (each item a string, or a list of aliases). The
masked passage may be given in ``extra_info["masked_text"]``.

Reading the fills from the ``<answer>`` text (:func:`parse_fills`), in this order:

1. **Restored passage.** If the masked passage is known, split it on ``[mask]`` and look for the
   context around each mask in the answer, left to right (whitespace collapsed, case kept). Only
   the context next to a mask is used (up to ``ANCHOR_CHARS`` characters on each side), so edits
   elsewhere in the passage do not matter. The fill is the text between the two anchors. This
   reading is used only when every anchor is found and at least one anchor is non-empty.
2. **One fill per line.** Otherwise every non-blank line is a fill, in order, after removing
   numbering such as ``1.``, ``2)``, ``(3)``, ``[mask1]:``, ``Mask 2 -``, ``- ``. If there are
   fewer lines than masks and one line holds them all, it is split on ``;`` (or ``|``), and on
   ``,`` only when that yields exactly ``k`` parts.

Score (:func:`score_ramp`): the mean over masks of the per-span answer reward,
``score = (1/k) · Σ_i reward(fill_i, golds_i)``; a missing fill scores 0 and extra fills are
ignored. ``all_correct`` is True only when every span's reward is 1.0.

>>> parse_fills("1. Paris\\n2. 1889", 2)
['Paris', '1889']
>>> parse_fills("The tower in Paris was built in 1889 by Eiffel.", 2,
...             "The tower in [mask] was built in [mask] by Eiffel.")
['Paris', '1889']
>>> from masksearch.rewards.answer import exact_match
>>> score_ramp("Paris\\n1890", [["Paris", "Paris, France"], "1889"], exact_match)
(0.5, False)
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Mapping

from masksearch.core.tokens import MASK_TOKEN
from masksearch.rewards.answer import as_gold_list, as_text

__all__ = ["ANCHOR_CHARS", "MASK_TOKEN", "as_span_golds", "masked_text_of", "parse_fills", "score_ramp"]

#: How much context on each side of a mask is used to locate it in a restored passage.
ANCHOR_CHARS = 40

_MASK_RE = re.compile(r"\[mask\]", re.IGNORECASE)
# Leading numbering of a fill line: "1.", "2)", "(3)", "[mask1]:", "[MASK 2] -", "mask_3:", "- ", "* ".
_NUMBERING_RE = re.compile(
    r"^\s*(?:"
    r"\[\s*mask\s*[_#]?\s*\d*\s*\]\s*[:：.)\-–=]?"  # [mask1]:  [MASK 2] -  [mask]
    r"|mask\s*[_#]?\s*\d+\s*[:：.)\-–=]"  # mask1:  Mask 2 -
    r"|\(?\d{1,3}\s*[.):：\]](?=\s|$)"  # 1.  2)  (3)  4:
    r"|\[\d{1,3}\]\s*:?"  # [1]
    r"|[-*•](?=\s)"  # bullets
    r")\s*",
    re.IGNORECASE,
)


# Stripped from the ends of anchors: a restored passage may drop or change edge punctuation.
_EDGE = string.punctuation + " "


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _strip_numbering(line: str) -> str:
    return _NUMBERING_RE.sub("", line, count=1).strip()


@functools.lru_cache(maxsize=4096)
def _anchors(template: str) -> tuple[tuple[str, str], ...]:
    """``(left, right)`` context anchors of each mask; cached (every rollout of a prompt shares it)."""
    pieces = [_collapse(p) for p in _MASK_RE.split(template)]
    return tuple(
        (pieces[i][-ANCHOR_CHARS:].strip(_EDGE), pieces[i + 1][:ANCHOR_CHARS].strip(_EDGE))
        for i in range(len(pieces) - 1)
    )


def _align(answer: str, template: str) -> list[str] | None:
    """Fills read from a restored passage by locating the context around each mask, or None."""
    anchors = _anchors(template) if len(template) <= 20_000 else _anchors.__wrapped__(template)
    k = len(anchors)
    if k == 0:
        return None
    text = _collapse(answer)
    fills: list[str] = []
    pos = 0
    anchored = False
    for i, (left, right) in enumerate(anchors):
        if left:
            idx = text.find(left, pos)
            if idx < 0:
                return None
            start = idx + len(left)
            anchored = True
        else:
            start = pos
        if right:
            end = text.find(right, start)
            if end < 0:
                return None
            anchored = True
        else:
            end = len(text) if i == k - 1 else start  # adjacent masks cannot be told apart
        fills.append(text[start:end].strip())
        pos = end
    return fills if anchored else None


def _split_line(line: str, k: int) -> list[str]:
    for sep in (";", "|"):
        parts = [_strip_numbering(p) for p in line.split(sep)]
        parts = [p for p in parts if p]
        if len(parts) > 1:
            return parts
    parts = [p.strip() for p in line.split(",") if p.strip()]
    return parts if len(parts) == k else [line]


def parse_fills(answer: str, n_masks: int, masked_text: str | None = None) -> list[str]:
    """Read the filled spans from an answer; see the module docstring for the rules.

    Args:
        answer: the text inside ``<answer>`` (already extracted).
        n_masks: number of masks ``k`` in the sample.
        masked_text: the masked passage, if known (enables the restored-passage reading).

    Returns:
        The fills in order (possibly fewer or more than ``n_masks``; never raises).
    """
    text = as_text(answer)
    template = as_text(masked_text)
    if template and _MASK_RE.search(template):
        aligned = _align(text, template)
        if aligned is not None:
            return aligned
    lines = [_strip_numbering(line) for line in text.splitlines()]
    fills = [line for line in lines if line]
    if n_masks > 1 and len(fills) == 1:
        fills = _split_line(fills[0], n_masks)
    return fills


def as_span_golds(ground_truth: object) -> list[list[str]]:
    """Ground truth of a RAMP sample as one alias list per mask.

    A string is one span; a list/array holds one item per mask, each a string or an alias list;
    a dict is read through its ``spans``/``target``/``answers``/``ground_truth`` key.

    >>> as_span_golds(["Paris", ["1889", "in 1889"], None])
    [['Paris'], ['1889', 'in 1889'], []]
    """
    value = ground_truth
    if isinstance(value, Mapping):
        for key in ("spans", "target", "answers", "answer", "ground_truth"):
            if key in value:
                value = value[key]
                break
        else:
            return []
    if value is None:
        return []
    if isinstance(value, str | bytes | bytearray):
        golds = as_gold_list(value)
        return [golds] if golds else []
    try:
        items = list(value)  # type: ignore[call-overload]
    except TypeError:
        return [as_gold_list(value)]
    return [as_gold_list(item) for item in items]


def masked_text_of(extra_info: object) -> str | None:
    """``extra_info["masked_text"]`` as a string, if present."""
    if isinstance(extra_info, Mapping):
        value = extra_info.get("masked_text")
        if value is not None:
            return as_text(value)
    return None


def score_ramp(
    answer: str | None,
    span_golds: list[list[str]] | object,
    reward: Callable[[str, list[str]], float],
    masked_text: str | None = None,
) -> tuple[float, bool]:
    """Mean per-span reward of a RAMP answer, and whether every span is fully correct.

    ``score = (1/k) · Σ_i reward(fill_i, golds_i)`` with ``k`` the number of masks; missing
    fills score 0. A span with no usable gold scores 0.

    Args:
        answer: the extracted ``<answer>`` text (``None`` scores 0).
        span_golds: one alias list per mask (or anything :func:`as_span_golds` accepts).
        reward: per-span answer reward ``(prediction, golds) -> float`` in ``[0, 1]``.
        masked_text: the masked passage, if known.

    Returns:
        ``(score, all_correct)``.
    """
    golds = span_golds if _is_span_list(span_golds) else as_span_golds(span_golds)
    k = len(golds)
    if answer is None or k == 0:
        return 0.0, False
    fills = parse_fills(answer, k, masked_text)
    scores = []
    for i, aliases in enumerate(golds):
        if i >= len(fills) or not aliases:
            scores.append(0.0)
            continue
        scores.append(_clip(reward(fills[i], aliases)))
    return sum(scores) / k, all(s >= 1.0 for s in scores)


def _is_span_list(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, list) and all(isinstance(g, str) for g in item) for item in value
    )


def _clip(value: object) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if x != x else min(1.0, max(0.0, x))
