"""Quality rules for RAMP samples — pure functions, so they can be property-tested.

The rules, and why:

- **No leak.** A span is masked only if its text (case-insensitive) occurs exactly once in the
  passage; after masking, no masked span may still be readable anywhere in the masked passage.
  Otherwise the model copies the answer instead of searching. Stricter still, a span is not
  masked when one of its capitalised key words appears elsewhere ("Belmondo's breakthrough"
  would give away a masked "Jean-Paul Belmondo").
- **Title.** The title *is shown* to the model (it anchors the search, as Search-R1 corpora carry
  titles), so any span whose text appears in the title is never masked. With ``show_title=False``
  the title is hidden and this check is skipped.
- **No overlap.** Candidate spans overlap often (``12 March 1990`` vs ``1990``); the
  higher-priority, then longer, span is kept, so masks never overlap or touch.
- **Split by passage.** ``assign_splits`` puts each passage id in exactly one split.
- **Rejections are counted by reason** (``REJECT_REASONS``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence

from masksearch.data.prompts import MASK_TOKEN
from masksearch.data.spans import LABEL_PRIORITY, Span

# Every reason a passage can be rejected, in the order the summary table prints them.
REJECT_REASONS = (
    "malformed",  # empty id or text, or the text already holds a mask token or a protocol tag
    "duplicate",  # same passage id, or same text (case- and whitespace-insensitive), seen before
    "too_short",  # fewer than min_words words
    "too_long",  # more than max_words words
    "no_span",  # fewer usable spans than any mask count allowed by min_masks and the mask mix
    "all_spans_leak",  # as no_span, but only because leaking spans (passage or title) were dropped
    "extractor_error",  # the extractor failed on this passage (LLM timeout, HTTP error, bad answer)
)

_TAG_RE = re.compile(r"</?(?:think|search|information|answer)>", re.IGNORECASE)


def word_count(text: str) -> int:
    return len(text.split())


def is_malformed(passage_id: str, text: str, mask_token: str = MASK_TOKEN) -> bool:
    """True when the passage cannot be used at all, whatever its length or spans.

    >>> is_malformed("1", "A [MASK] here"), is_malformed("1", "Fine text"), is_malformed("", "x")
    (True, False, True)
    """
    if not isinstance(passage_id, str) or not passage_id.strip():
        return True
    if not isinstance(text, str) or not text.strip():
        return True
    return mask_token.casefold() in text.casefold() or _TAG_RE.search(text) is not None


def dedupe_key(text: str) -> str:
    """Case- and whitespace-insensitive key for duplicate passages."""
    return " ".join(text.casefold().split())


def count_occurrences(haystack: str, needle: str) -> int:
    """Case-insensitive occurrences of ``needle`` in ``haystack``, overlapping ones included.

    >>> count_occurrences("Paris and paris, PARIS", "Paris"), count_occurrences("aaa", "aa")
    (3, 2)
    """
    hay, pin = haystack.casefold(), needle.casefold()
    if not pin:
        return 0
    n, pos = 0, hay.find(pin)
    while pos >= 0:
        n += 1
        pos = hay.find(pin, pos + 1)
    return n


def _is_valid(text: str, span: Span, mask_token: str) -> bool:
    return (
        0 <= span.start < span.end <= len(text)
        and text[span.start : span.end] == span.text
        and span.text.strip() == span.text
        and len(span.text) >= 2
        and "\n" not in span.text
        and mask_token.casefold() not in span.text.casefold()
    )


_KEY_WORD_RE = re.compile(r"[^\W\d_][\w'’\-]*")


def key_words(span_text: str) -> set[str]:
    """Capitalised words of 4+ letters in a span: the part of a name that gives it away.

    >>> sorted(key_words("Jean-Paul Belmondo of Paris"))
    ['belmondo', 'jean-paul', 'paris']
    """
    return {w.casefold() for w in _KEY_WORD_RE.findall(span_text) if len(w) >= 4 and w[0].isupper()}


def span_leaks(text: str, span: Span, title: str | None = None) -> bool:
    """True when masking ``span`` would still give it away.

    Full leak: the span's text occurs elsewhere in the passage, or in the shown title.
    Partial leak: one of its key words (``key_words``: "Belmondo" of "Jean-Paul Belmondo") occurs
    as a word outside the span or in the shown title, so a surname left in the text cannot
    reveal the masked full name.
    """
    if count_occurrences(text, span.text) != 1:
        return True
    shown = (title or "").casefold()
    if shown and span.text.casefold() in shown:
        return True
    outside = f"{text[: span.start]}\x00{text[span.end :]}".casefold()
    for word in key_words(span.text):
        pattern = re.compile(rf"(?<!\w){re.escape(word)}(?!\w)")
        if pattern.search(outside) or (shown and pattern.search(shown)):
            return True
    return False


def drop_overlaps(spans: Iterable[Span]) -> list[Span]:
    """Keep a set of pairwise non-overlapping, non-touching spans, sorted by start.

    Higher-priority labels win (``LABEL_PRIORITY``), then longer spans, then earlier ones.
    Touching spans (one ends where the next starts) count as overlapping: two adjacent masks
    would read as one.

    >>> [s.text for s in drop_overlaps([Span(0, 4, "1990", "date"), Span(0, 7, "1990 km", "number")])]
    ['1990']
    """
    ranked = sorted(spans, key=lambda s: (LABEL_PRIORITY.get(s.label, 5), -(s.end - s.start), s.start))
    kept: list[Span] = []
    for s in ranked:
        if all(s.end < k.start or s.start > k.end for k in kept):
            kept.append(s)
    return sorted(kept, key=lambda s: s.start)


def usable_spans(
    text: str,
    candidates: Iterable[Span],
    *,
    title: str | None = None,
    mask_token: str = MASK_TOKEN,
) -> tuple[list[Span], int]:
    """Valid, non-leaking, non-overlapping spans, and how many candidates were dropped as leaks.

    ``title`` is the title shown to the model (``None`` when it is hidden).
    """
    valid = [s for s in candidates if _is_valid(text, s, mask_token)]
    safe = [s for s in valid if not span_leaks(text, s, title)]
    return drop_overlaps(safe), len(valid) - len(safe)


def choose_spans(usable: Sequence[Span], k: int, rng: random.Random) -> list[Span]:
    """``k`` spans drawn at random from ``usable``, returned in passage order."""
    if not 0 < k <= len(usable):
        raise ValueError(f"cannot choose {k} spans out of {len(usable)}")
    return sorted(rng.sample(list(usable), k), key=lambda s: s.start)


def apply_masks(text: str, spans: Sequence[Span], mask_token: str = MASK_TOKEN) -> str:
    """Replace each span by ``mask_token``; ``spans`` must be sorted and non-overlapping.

    >>> apply_masks("Paris is in France.", [Span(0, 5, "Paris", "x"), Span(12, 18, "France", "x")])
    '[mask] is in [mask].'
    """
    parts, pos = [], 0
    for s in spans:
        if s.start < pos:
            raise ValueError("spans overlap or are not sorted by start")
        parts.extend((text[pos : s.start], mask_token))
        pos = s.end
    parts.append(text[pos:])
    return "".join(parts)


def leaked_spans(
    masked_text: str,
    span_texts: Sequence[str],
    *,
    title: str | None = None,
    mask_token: str = MASK_TOKEN,
) -> list[str]:
    """The masked span texts still readable in ``masked_text`` or the shown title (should be none).

    The mask tokens are blanked before checking, so a span such as ``"Mask"`` is not mistaken for
    a leak of the token itself.
    """
    visible = masked_text.replace(mask_token, "\x00").casefold()
    shown_title = (title or "").casefold()
    return [t for t in span_texts if t.casefold() in visible or (shown_title and t.casefold() in shown_title)]


def assign_splits(passage_ids: Iterable[str], val_fraction: float, seed: int) -> dict[str, str]:
    """Map each distinct passage id to ``"train"`` or ``"val"``, independent of input order.

    ``round(val_fraction * n)`` ids go to val, at least one when ``val_fraction > 0`` and there
    are two or more ids, and never all of them.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ids = sorted(set(passage_ids))
    random.Random(f"split:{seed}").shuffle(ids)
    n_val = round(val_fraction * len(ids))
    if val_fraction > 0 and len(ids) >= 2:
        n_val = min(max(n_val, 1), len(ids) - 1)
    return {pid: ("val" if i < n_val else "train") for i, pid in enumerate(ids)}
