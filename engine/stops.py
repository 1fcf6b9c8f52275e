"""The one rule for where a turn ends: right after the first EOS token or stop string (both kept).

:func:`find_stop_cut` applies it after the fact (the session's turns, the ``hf`` rollout's scripted
turns; ``O(log n)`` decodes, not one per token), :func:`stop_in_tail` while decoding (one tail decode
per new token), :func:`restore_stop` / :func:`strip_stop` across the OpenAI wire, where servers drop
the stop string from the text (a text-out client puts it back, ``sft serve`` takes it off).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from masksearch.core.grammar import ANSWER, SEARCH

__all__ = ["find_stop_cut", "restore_stop", "stop_in_tail", "strip_stop"]

# Tokens re-decoded per stop-string check beyond the longest stop string (tokens of 0-1 characters).
_STOP_TAIL_SLACK = 8


def find_stop_cut(
    tokenizer: Any,
    token_ids: Sequence[int],
    stops: Sequence[str],
    eos_token_ids: frozenset[int] | set[int] = frozenset(),
) -> tuple[int, str | None, bool]:
    """Where a generated turn must end, for backends that ignore stop strings.

    The turn ends at the first EOS token (kept) or at the first token whose decoded prefix
    contains a stop string (kept, together with the stop string), whichever comes first; every
    token after that is dropped.

    Args:
        tokenizer: decodes ids (``decode(ids, skip_special_tokens=False)``).
        token_ids: the ids generated in this turn.
        stops: stop strings.
        eos_token_ids: ids that end a sequence.

    Returns:
        ``(n_keep, stop, eos)``: how many ids to keep, the stop string that ended the turn (or
        ``None``), and whether it ended on an EOS token.
    """
    ids = list(token_ids)
    n = len(ids)
    eos = False
    for i, tok in enumerate(ids):
        if tok in eos_token_ids:
            n, eos = i + 1, True
            break
    if n == 0 or not stops:
        return n, None, eos

    def first_stop(k: int) -> str | None:
        text = tokenizer.decode(ids[:k], skip_special_tokens=False)
        found = [(text.find(s), s) for s in stops if s in text]
        return min(found)[1] if found else None

    if first_stop(n) is None:
        return n, None, eos
    # Smallest prefix that contains a stop string (containment of an ASCII stop string is
    # monotone in the prefix length), found with O(log n) decodes.
    lo, hi = 1, n
    while lo < hi:
        mid = (lo + hi) // 2
        if first_stop(mid) is None:
            lo = mid + 1
        else:
            hi = mid
    # An EOS after the stop string is dropped with everything else after the cut.
    return lo, first_stop(lo), False


def stop_in_tail(tokenizer: Any, token_ids: Sequence[int], stops: Sequence[str]) -> bool:
    """Whether the decoded tail of ``token_ids`` holds a stop string: checked after every new token,
    so a hit means the last token completed it. Decodes only the last ``longest stop + 8`` tokens."""
    if not stops:
        return False
    longest = max(len(s) for s in stops)
    tail = tokenizer.decode(list(token_ids[-(longest + _STOP_TAIL_SLACK) :]), skip_special_tokens=False)
    return any(s in tail for s in stops)


def strip_stop(text: str, finish: str | None, stop: Sequence[str]) -> tuple[str, str, str | None]:
    """``(text without the stop string, finish_reason, stop_reason)`` as vLLM reports them."""
    if finish == "stop":
        for s in stop:
            if text.endswith(s):
                return text[: -len(s)], "stop", s
    if finish == "length":
        return text, "length", None
    return text, "stop", None


def restore_stop(
    text: str, stop: Sequence[str], finish_reason: str | None, choice: dict[str, Any]
) -> tuple[str, str | None]:
    """OpenAI servers drop the stop string from the text; put it back so the grammar sees it.

    ``finish_reason == "stop"`` means a stop string *or* EOS. vLLM says which in ``stop_reason``
    (the string, or ``None`` for EOS); otherwise the last unclosed ``<search>``/``<answer>`` tells.
    """
    if finish_reason == "length":
        return text, "length"
    if finish_reason != "stop":
        return text, None
    if any(text.endswith(s) for s in stop):
        return text, "stop"
    if "stop_reason" in choice:
        matched = choice["stop_reason"]
        if isinstance(matched, str) and matched in stop:
            return text + matched, "stop"
        return text, "eos"
    closing = {SEARCH.open: SEARCH.close, ANSWER.open: ANSWER.close}
    last_open = max(closing, key=text.rfind)
    if (
        text.rfind(last_open) >= 0
        and closing[last_open] in stop
        and closing[last_open] not in text[text.rfind(last_open) :]
    ):
        return text + closing[last_open], "stop"
    return text, "eos"
