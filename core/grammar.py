"""The MaskSearch tag grammar: the ONE place that knows what a well-formed response looks like.

Used by the rewards (answer extraction, format reward), by the multi-turn search loop in
``masksearch.env`` (stop strings, query extraction) and by evaluation, so all three agree.

Grammar of a model response (the prompt is never part of it; ``ws`` is optional whitespace)::

    response := ws THINK ws ( SEARCH ws INFORMATION ws ( THINK ws )? )* ANSWER ws
    THINK    := "<think>" text "</think>"
    SEARCH   := "<search>" query "</search>"
    INFO     := "<information>" observation "</information>"    (written by the environment)
    ANSWER   := "<answer>" non-empty text "</answer>"

``text``/``query`` contain no tag of the grammar. The observation inside ``<information>`` is
opaque: retrieved documents may contain anything, tags included, so every function here skips
it (an ``<answer>`` quoted in a retrieved passage is never the model's answer). An
``<information>`` block with no closing tag runs to the end of the response.

Why hand-written scanning instead of one big regex: everything here is a left-to-right pass with
``str.find`` and a fixed-alternation tag regex, so it is linear in the length of the response
(100k-character outputs take microseconds to milliseconds) and never raises, whatever the
string.

>>> r = "<think>who?</think><search>capital of France</search>"
>>> r += "<information>Doc 1(Title: Paris) ...</information><think>ok</think><answer> Paris </answer>"
>>> extract_answer(r), count_searches(r), validate_format(r).ok
('Paris', 1, True)
>>> validate_format("<think>x</think><answer>a</answer> trailing").reason
'text after </answer>'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, NamedTuple

from masksearch.core.logs import module_logger

logger = module_logger(__name__)

__all__ = [
    "ANSWER",
    "ANSWER_STOP",
    "INFORMATION",
    "SEARCH",
    "SEARCH_STOP",
    "TAGS",
    "THINK",
    "FormatCheck",
    "Tag",
    "Turn",
    "TurnKind",
    "answer_and_searches",
    "count_searches",
    "extract_answer",
    "extract_search_query",
    "parse_turns",
    "strip_information",
    "validate_format",
]


class Tag(NamedTuple):
    """One tag of the grammar: its name and its literal opening and closing strings."""

    name: str
    open: str
    close: str


THINK = Tag("think", "<think>", "</think>")
SEARCH = Tag("search", "<search>", "</search>")
INFORMATION = Tag("information", "<information>", "</information>")
ANSWER = Tag("answer", "<answer>", "</answer>")
TAGS: dict[str, Tag] = {t.name: t for t in (THINK, SEARCH, INFORMATION, ANSWER)}

#: Stop strings for generation: the model stops after a query (the env then appends the
#: ``<information>`` block) or after its final answer.
SEARCH_STOP = SEARCH.close
ANSWER_STOP = ANSWER.close

# A fixed alternation of literals: no nested quantifiers, so no catastrophic backtracking.
_TAG_RE = re.compile(r"<(/?)(think|search|information|answer)>")

TurnKind = Literal["think", "search", "information", "answer", "text"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One block of a response.

    Attributes:
        kind: ``think``/``search``/``information``/``answer``, or ``text`` for anything outside
            tags (including stray closing tags).
        content: the text between the tags (not stripped), or the raw text for ``text``.
        span: ``(start, end)`` character offsets of the whole block, tags included.
        closed: False when the closing tag is missing (the block then runs to the end).
    """

    kind: TurnKind
    content: str
    span: tuple[int, int]
    closed: bool = True


@dataclass(frozen=True, slots=True)
class FormatCheck:
    """Result of :func:`validate_format`: ``ok`` and a short, low-cardinality ``reason``.

    ``reason`` is ``"ok"`` when the format is valid, otherwise the first violation found, e.g.
    ``"missing <think> at start"``, ``"unclosed <answer>"``, ``"nested <search> in <think>"``.
    """

    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok


def _as_text(value: object) -> str:
    """Any input as a string: None -> "", non-strings -> ``str(value)`` (never raises)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return str(value)
    except Exception:
        return ""


def parse_turns(response: str) -> list[Turn]:
    """Split a response into blocks, leniently (for display, metrics and the env).

    A block runs from an opening tag to the first matching closing tag; an ``<information>``
    block is opaque. Non-blank text between blocks and stray closing tags become ``text`` turns;
    an unclosed block runs to the end with ``closed=False``. Use :func:`validate_format` to
    judge strictness.

    Args:
        response: the model's response (never the prompt).

    Returns:
        The blocks in order.

    >>> [(t.kind, t.content) for t in parse_turns("<think>a</think> hi <answer>b")]
    [('think', 'a'), ('text', ' hi '), ('answer', 'b')]
    >>> parse_turns("<answer>b")[0].closed
    False
    """
    text = _as_text(response)
    turns: list[Turn] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TAG_RE.search(text, pos)
        start = m.start() if m else n
        if text[pos:start].strip():
            turns.append(Turn("text", text[pos:start], (pos, start)))
        if m is None:
            break
        if m.group(1):  # stray closing tag
            turns.append(Turn("text", m.group(0), (m.start(), m.end())))
            pos = m.end()
            continue
        tag = TAGS[m.group(2)]
        end = text.find(tag.close, m.end())
        if end < 0:
            turns.append(Turn(tag.name, text[m.end() :], (m.start(), n), closed=False))  # type: ignore[arg-type]
            break
        stop = end + len(tag.close)
        turns.append(Turn(tag.name, text[m.end() : end], (m.start(), stop)))  # type: ignore[arg-type]
        pos = stop
    return turns


def strip_information(response: str) -> str:
    """Remove every ``<information>…</information>`` block (tags included).

    Observations are written by the environment, not the model: remove them before measuring
    what the model wrote (length penalties) or looking for its tags. An unclosed block is
    removed up to the end.

    >>> strip_information("<search>q</search><information>docs</information><answer>a</answer>")
    '<search>q</search><answer>a</answer>'
    """
    text = _as_text(response)
    if INFORMATION.open not in text:
        return text
    parts: list[str] = []
    pos = 0
    while True:
        start = text.find(INFORMATION.open, pos)
        if start < 0:
            parts.append(text[pos:])
            break
        parts.append(text[pos:start])
        end = text.find(INFORMATION.close, start + len(INFORMATION.open))
        if end < 0:
            break
        pos = end + len(INFORMATION.close)
    return "".join(parts)


def _last_block(text: str, tag: Tag) -> str | None:
    """Content of the last complete ``tag`` block of ``text`` (no information skipping)."""
    close = text.rfind(tag.close)
    if close < 0:
        return None
    start = text.rfind(tag.open, 0, close)
    if start < 0:
        return None
    return text[start + len(tag.open) : close]


def extract_search_query(turn_text: str) -> str | None:
    """The query of the LAST complete ``<search>…</search>`` of one model turn, stripped.

    Args:
        turn_text: the text the model generated in one turn (no observations in it).

    Returns:
        The stripped query; ``""`` for an empty block; ``None`` when there is no complete block.

    >>> extract_search_query("<think>x</think><search> a </search><search> b </search>")
    'b'
    >>> extract_search_query("<search>unfinished") is None
    True
    """
    block = _last_block(_as_text(turn_text), SEARCH)
    return None if block is None else block.strip()


def extract_answer(response: str) -> str | None:
    """The last complete ``<answer>…</answer>`` that is not inside an ``<information>`` block.

    Answers quoted in retrieved documents are ignored, so a search result cannot answer for the
    model. Only complete blocks count: a truncated ``<answer>`` gives ``None``.

    Args:
        response: the model's response (never the prompt).

    Returns:
        The stripped answer, or ``None`` when there is none.

    >>> extract_answer("<information><answer>x</answer></information><answer> y </answer>")
    'y'
    >>> extract_answer("<answer>truncated") is None
    True
    """
    return _answer_of_stripped(strip_information(response))


def _answer_of_stripped(stripped: str) -> str | None:
    block = _last_block(stripped, ANSWER)
    return None if block is None else block.strip()


def count_searches(response: str) -> int:
    """Number of complete ``<search>…</search>`` blocks outside observations.

    >>> count_searches("<search>a</search><information><search>z</search></information><search>b</search>")
    2
    """
    return _searches_of_stripped(strip_information(response))


def _searches_of_stripped(text: str) -> int:
    count = 0
    pos = 0
    while True:
        start = text.find(SEARCH.open, pos)
        if start < 0:
            return count
        end = text.find(SEARCH.close, start + len(SEARCH.open))
        if end < 0:
            return count
        count += 1
        pos = end + len(SEARCH.close)


def answer_and_searches(response: str) -> tuple[str | None, int]:
    """``(extract_answer(response), count_searches(response))`` with one observation-stripping pass.

    >>> answer_and_searches("<search>q</search><information>x</information><answer>a</answer>")
    ('a', 1)
    """
    stripped = strip_information(response)
    return _answer_of_stripped(stripped), _searches_of_stripped(stripped)


# Allowed next block for each previous block ("" = start of the response).
_NEXT: dict[str, frozenset[str]] = {
    "": frozenset({"think"}),
    "think": frozenset({"search", "answer"}),
    "search": frozenset({"information"}),
    "information": frozenset({"think", "search", "answer"}),
    "answer": frozenset(),
}


def _order_error(prev: str, name: str) -> str:
    """Reason for block ``name`` not being allowed after block ``prev``."""
    if prev == "":
        return "missing <think> at start"
    if prev == "answer":
        return "more than one <answer>" if name == "answer" else "text after </answer>"
    if prev == "search":
        return "<search> not followed by <information>"
    if prev == name == "think":
        return "two <think> blocks in a row"
    return f"<{name}> after <{prev}>"


def validate_format(response: str) -> FormatCheck:
    """Strict check of a response against the grammar in the module docstring.

    The first violation is reported: empty response, text outside tags, stray or nested tags,
    unclosed tags, missing leading ``<think>``, a search without its observation, no/empty/two
    answers, anything after ``</answer>``.

    Args:
        response: the model's response (never the prompt).

    Returns:
        ``FormatCheck(ok, reason)``; ``reason == "ok"`` when valid.

    >>> validate_format("<think>a</think><answer>b</answer>")
    FormatCheck(ok=True, reason='ok')
    >>> validate_format("<think>a<search>q</search></think><answer>b</answer>").reason
    'nested <search> in <think>'
    >>> validate_format("<answer>b</answer>").reason
    'missing <think> at start'
    """
    text = _as_text(response)
    if not text.strip():
        return FormatCheck(False, "empty response")
    # One pass over every tag occurrence; the block structure is read off this list, so each
    # block costs O(1) work besides one str.find (linear overall, no backtracking).
    matches = list(_TAG_RE.finditer(text))
    n_matches = len(matches)
    prev = ""
    pos = 0
    i = 0
    while i < n_matches:
        m = matches[i]
        start = m.start()
        if start > pos and not text[pos:start].isspace():
            return FormatCheck(False, "text after </answer>" if prev == "answer" else "text outside tags")
        name = m.group(2)
        if m.group(1):
            return FormatCheck(False, f"unexpected </{name}>")
        if name not in _NEXT[prev]:
            return FormatCheck(False, _order_error(prev, name))
        tag = TAGS[name]
        if tag is INFORMATION:  # opaque: jump past its closing tag
            end = text.find(tag.close, m.end())
            if end < 0:
                return FormatCheck(False, f"unclosed <{name}>")
            pos = end + len(tag.close)
            i += 1
            while i < n_matches and matches[i].start() < pos:
                i += 1
        else:  # the next tag must be this block's closing tag
            nxt = matches[i + 1] if i + 1 < n_matches else None
            if nxt is None or nxt.group(0) != tag.close:
                if text.find(tag.close, m.end()) < 0:
                    return FormatCheck(False, f"unclosed <{name}>")
                return FormatCheck(False, f"nested <{nxt.group(2)}> in <{name}>")  # type: ignore[union-attr]
            if tag is ANSWER and (nxt.start() == m.end() or text[m.end() : nxt.start()].isspace()):
                return FormatCheck(False, "empty <answer>")
            pos = nxt.end()
            i += 2
        prev = name
    if pos < len(text) and not text[pos:].isspace():
        return FormatCheck(False, "text after </answer>" if prev == "answer" else "text outside tags")
    if prev == "search":
        return FormatCheck(False, "<search> not followed by <information>")
    if prev != "answer":
        return FormatCheck(False, "missing <answer>")
    return FormatCheck(True, "ok")
