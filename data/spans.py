"""Span extractors: propose the salient spans of a passage that RAMP may mask.

Extractors only *propose* candidates (with character offsets); which ones are masked, and the
leak/overlap rules, live in ``masking.py`` so they hold whatever the extractor returns.

Three extractors, chosen by name through ``make_extractor``:

- ``rule`` (default, no dependencies): quoted titles, dates and years, numbers with units,
  capitalised multi-word names and single proper nouns that do not start a sentence.
- ``spacy``: named entities from a spaCy pipeline; available only when spaCy and the pipeline are
  installed (``ExtractorUnavailable`` says how to install them otherwise).
- ``llm``: asks an OpenAI-compatible ``/v1/chat/completions`` endpoint, as the MaskSearch data
  scripts do; answers are cached on disk, keyed by model and passage text.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from masksearch.core.logs import module_logger

logger = module_logger(__name__)


@dataclass(frozen=True)
class Span:
    """A candidate span: ``text == passage[start:end]``; ``label`` says which rule found it."""

    start: int
    end: int
    text: str
    label: str


# Lower value wins when candidates overlap (see ``masking.drop_overlaps``); unknown labels get 5.
LABEL_PRIORITY: dict[str, int] = {
    "quoted": 0,
    "date": 1,
    "number": 2,
    "name": 3,
    "entity": 3,
    "llm": 3,
    "proper_noun": 4,
}


class ExtractorUnavailable(RuntimeError):
    """The extractor cannot be built here (missing package, model or endpoint)."""


class ExtractorError(RuntimeError):
    """Extraction of one passage failed (timeout, HTTP error, unparsable answer)."""


class SpanExtractor(Protocol):
    """Anything with a ``name`` that maps passage text to candidate spans."""

    name: str

    def __call__(self, text: str) -> list[Span]: ...


# ---------------------------------------------------------------------------------------------
# Rule-based extractor
# ---------------------------------------------------------------------------------------------


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|Jan\.|Feb\.|Mar\.|Apr\.|Aug\.|Sept?\.|Oct\.|Nov\.|Dec\.)"
)
_YEAR = r"(?:1[0-9]{3}|20[0-9]{2})"
_DATE_RES = [
    re.compile(rf"\b\d{{1,2}}\s+{_MONTH}\s+\d{{3,4}}\b"),  # 12 March 1990
    re.compile(rf"\b{_MONTH}\s+\d{{1,2}},?\s+\d{{3,4}}\b"),  # March 12, 1990
    re.compile(rf"\b{_MONTH}\s+{_YEAR}\b"),  # March 1990
    re.compile(r"\b\d{1,2}(?:st|nd|rd|th)[ -]century\b"),  # 19th century
    re.compile(rf"\b{_YEAR}s?\b"),  # 1990, 1960s
]
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_UNIT = (
    r"%|percent|per cent|km2|km²|km|kilometres|kilometers|miles|mi|metres|meters|m|feet|ft|cm|mm"
    r"|kg|kilograms|tonnes|tons|pounds|lb|hectares|acres|square kilometres|square miles"
    r"|million|billion|trillion|thousand|hundred|years|days|people|inhabitants|residents"
    r"|species|episodes|copies|votes|seats|members|students|employees|goals|games|points"
    r"|°C|°F|MW|GW|mph|km/h"
)
_NUMBER_RES = [
    re.compile(rf"[$£€¥]\s?(?:{_NUM})(?:\s(?:million|billion|trillion))?\b"),  # $3.5 million
    re.compile(rf"\b(?:{_NUM})\s?(?:{_UNIT})(?![\w])"),  # 12 km, 45%
    re.compile(r"(?<![\w.,])\d{1,3}(?:,\d{3})+(?![\w,])|(?<![\w.,])\d{2,}(?:\.\d+)?(?![\w,])"),  # 300, 1,200
]
_QUOTED_RE = re.compile(r'"([^"\n]{2,80})"|“([^”\n]{2,80})”')
_WORD_RE = re.compile(r"[^\W\d_](?:[\w'’\-]*\w)?")
# Lowercase words allowed inside a name ("Willem de Kooning"); "and" is left out on purpose, since
# it joins two names in lists far more often than it sits inside one.
_CONNECTORS = _wordset("of the de du da di von van der den la le del al bin ibn")
# Capitalised words that start sentences or are too generic to be worth a mask.
_STOP_CAPS = _wordset(
    """a an the in on at by for from with as after before during since until when while where
    although though however but and or so if he she it they we you i his her its their our this
    that these those there here it's many some most several according following despite also
    then thus today yesterday english american british french german"""
)


def _is_cap(word: str) -> bool:
    return word[:1].isupper()


def _name_spans(text: str) -> list[Span]:
    """Runs of capitalised words joined by spaces (and lowercase connectors inside a run)."""
    words = list(_WORD_RE.finditer(text))
    spans: list[Span] = []
    i = 0
    while i < len(words):
        if not _is_cap(words[i].group()):
            i += 1
            continue
        run = [words[i]]
        j = i + 1
        pending: list[re.Match[str]] = []
        while j < len(words):
            prev = (pending or run)[-1]
            gap = text[prev.end() : words[j].start()]
            initial = len(prev.group()) == 1 and prev.group().isupper()
            if not (gap.isspace() or (initial and gap.startswith(".") and gap[1:].isspace())):
                break
            word = words[j].group()
            if _is_cap(word):
                run.extend(pending)
                run.append(words[j])
                pending = []
            elif word in _CONNECTORS and len(pending) < 2:
                pending.append(words[j])
            else:
                break
            j += 1
        i = j if j > i + 1 else i + 1
        while run and run[0].group().lower() in _STOP_CAPS:
            run = run[1:]
        while run and run[-1].group().lower() in _STOP_CAPS:
            run = run[:-1]
        if not run:
            continue
        start, end = run[0].start(), run[-1].end()
        if text[end - 2 : end] in ("'s", "’s"):
            end -= 2  # possessive: "Seurat's" -> "Seurat"
        if len(run) >= 2:
            spans.append(Span(start, end, text[start:end], "name"))
        elif len(run[0].group()) >= 4 and not _sentence_initial(text, start):
            spans.append(Span(start, end, text[start:end], "proper_noun"))
    return spans


def _sentence_initial(text: str, start: int) -> bool:
    before = text[:start].rstrip()
    return not before or before[-1] in ".!?:;\"'(\n"


class RuleSpanExtractor:
    """Regex and capitalisation rules; fast, deterministic, no dependencies.

    >>> [s.text for s in RuleSpanExtractor()('Marie Curie won the prize in 1903, in "Radium" labs.')]
    ['Radium', '1903', 'Marie Curie']
    """

    name = "rule"

    def __call__(self, text: str) -> list[Span]:
        spans: list[Span] = []
        for m in _QUOTED_RE.finditer(text):
            group = 1 if m.group(1) is not None else 2
            start, end = m.start(group), m.end(group)
            while end > start and text[end - 1] in ".,;:!?":  # "... via electricity." -> no period
                end -= 1
            inner = text[start:end]
            if inner and inner.strip() == inner and len(inner.split()) <= 10:
                spans.append(Span(start, end, inner, "quoted"))
        for regex in _DATE_RES:
            spans.extend(Span(m.start(), m.end(), m.group(), "date") for m in regex.finditer(text))
        for regex in _NUMBER_RES:
            spans.extend(Span(m.start(), m.end(), m.group(), "number") for m in regex.finditer(text))
        spans.extend(_name_spans(text))
        return _dedupe(spans)


def _dedupe(spans: list[Span]) -> list[Span]:
    """Keep one span per (start, end), the best-priority label, in a stable order."""
    best: dict[tuple[int, int], Span] = {}
    for s in spans:
        key = (s.start, s.end)
        if key not in best or LABEL_PRIORITY.get(s.label, 5) < LABEL_PRIORITY.get(best[key].label, 5):
            best[key] = s
    return sorted(best.values(), key=lambda s: (LABEL_PRIORITY.get(s.label, 5), s.start, s.end))


# ---------------------------------------------------------------------------------------------
# spaCy extractor (optional)
# ---------------------------------------------------------------------------------------------

SPACY_LABELS = _wordset(
    "PERSON NORP FAC ORG GPE LOC PRODUCT EVENT WORK_OF_ART LAW LANGUAGE DATE MONEY QUANTITY PERCENT"
)


class SpacySpanExtractor:
    """Named entities from a spaCy pipeline (``en_core_web_sm`` unless told otherwise)."""

    name = "spacy"

    def __init__(self, model: str = "en_core_web_sm") -> None:
        try:
            import spacy
        except ImportError as exc:
            raise ExtractorUnavailable(
                "the 'spacy' extractor needs spaCy: pip install spacy && python -m spacy download "
                f"{model} (or use --extractor rule)"
            ) from exc
        try:
            self._nlp = spacy.load(model, disable=["lemmatizer", "textcat"])
        except OSError as exc:
            raise ExtractorUnavailable(
                f"spaCy pipeline '{model}' is not installed: python -m spacy download {model}"
            ) from exc

    def __call__(self, text: str) -> list[Span]:
        doc = self._nlp(text)
        spans = [
            Span(e.start_char, e.end_char, e.text, "date" if e.label_ == "DATE" else "entity")
            for e in doc.ents
            if e.label_ in SPACY_LABELS
        ]
        return _dedupe(spans)


# ---------------------------------------------------------------------------------------------
# LLM extractor (OpenAI-compatible endpoint)
# ---------------------------------------------------------------------------------------------

LLM_PROMPT_VERSION = "v1"
LLM_SYSTEM_PROMPT = (
    "You select salient spans of a passage for a fill-in-the-blank exercise: named entities, "
    "dates, numbers with units, and key terms whose recovery needs knowledge. Copy each span "
    "exactly as it appears in the passage. Reply with a JSON array of strings and nothing else."
)


def chat_completions_url(base_url: str) -> str:
    """Accept ``http://host:port``, ``.../v1`` or the full ``.../v1/chat/completions``.

    >>> chat_completions_url("http://127.0.0.1:8000/v1/")
    'http://127.0.0.1:8000/v1/chat/completions'
    """
    from masksearch.core.openai_client import v1_base

    return v1_base(base_url) + "/chat/completions"


def parse_span_list(content: str) -> list[str]:
    """The JSON array of strings inside a model answer (code fences and chatter around it allowed).

    >>> parse_span_list('Sure: ```json\\n["Paris", {"text": "1889"}]\\n```')
    ['Paris', '1889']
    """
    start, end = content.find("["), content.rfind("]")
    if start < 0 or end <= start:
        raise ExtractorError(f"no JSON array in the model answer: {content[:200]!r}")
    try:
        items = json.loads(content[start : end + 1])
    except json.JSONDecodeError as exc:
        raise ExtractorError(f"unparsable JSON array in the model answer: {exc}") from exc
    out: list[str] = []
    for item in items:
        value = item.get("text") if isinstance(item, dict) else item
        if isinstance(value, str) and value.strip():
            out.append(value.strip())
    return out


def locate_spans(text: str, span_texts: list[str], label: str = "llm") -> list[Span]:
    """Offsets of each proposed string in ``text`` (first exact match, else case-insensitive)."""
    folded = text.lower() if len(text.lower()) == len(text) else None
    spans = []
    for s in span_texts:
        start = text.find(s)
        if start < 0 and folded is not None:
            start = folded.find(s.lower())
        if start < 0:
            logger.debug("LLM span %r not found in passage; dropped", s)
            continue
        spans.append(Span(start, start + len(s), text[start : start + len(s)], label))
    return _dedupe(spans)


class LLMSpanExtractor:
    """Ask an OpenAI-compatible chat endpoint for spans; cache answers on disk.

    URL, model and key come from the arguments or from ``MASKSEARCH_LLM_BASE_URL`` /
    ``OPENAI_BASE_URL``, ``MASKSEARCH_LLM_MODEL``, ``MASKSEARCH_LLM_API_KEY`` / ``OPENAI_API_KEY``
    (``api_key=""``: no key and no look-up). The key is only ever sent as a bearer header.
    Requests go through the shared client (:mod:`masksearch.core.openai_client`): a timeout, and
    ``retries`` retries of transport errors, 429 (``Retry-After`` honoured) and 5xx answers, then
    ``ExtractorError`` for that passage. Answers are kept in the shared disk cache.
    """

    name = "llm"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        cache_dir: str | Path | None = None,
        retries: int = 2,
        max_spans: int = 8,
    ) -> None:
        from masksearch.core.openai_client import CallStats, DiskCache

        base_url = base_url or os.environ.get("MASKSEARCH_LLM_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise ExtractorUnavailable(
                "the 'llm' extractor needs an endpoint: --llm-url or MASKSEARCH_LLM_BASE_URL"
            )
        self.model = model or os.environ.get("MASKSEARCH_LLM_MODEL")
        if not self.model:
            raise ExtractorUnavailable(
                "the 'llm' extractor needs a model: --llm-model or MASKSEARCH_LLM_MODEL"
            )
        self.base_url = base_url
        self.url = chat_completions_url(base_url)
        if api_key is None:  # "" means: send no key, and do not look in the environment
            api_key = os.environ.get("MASKSEARCH_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self.api_key = api_key or None
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.max_spans = int(max_spans)
        self.cache_dir = Path(cache_dir or Path.home() / ".cache" / "masksearch" / "llm_spans")
        self._cache = DiskCache(self.cache_dir)
        self._stats = CallStats()
        self._client: Any = None

    @property
    def requests_made(self) -> int:
        """HTTP requests sent so far (retries included)."""
        return self._stats.as_dict()["calls"]

    def _cache_key(self, text: str) -> str:
        from masksearch.core.openai_client import cache_key

        return cache_key(self.model, {"prompt_version": LLM_PROMPT_VERSION, "passage": text})

    def __call__(self, text: str) -> list[Span]:
        key = self._cache_key(text)
        span_texts = self._cache.get(key)
        if not isinstance(span_texts, list):
            span_texts = parse_span_list(self._ask(text))[: self.max_spans]
            self._cache.put(key, span_texts)
        return locate_spans(text, span_texts)

    def _ask(self, text: str) -> str:
        from masksearch.core.openai_client import EndpointError, OpenAIClient, RetryPolicy, chat_text

        if self._client is None:
            self._client = OpenAIClient(
                self.base_url,
                self.api_key,
                timeout_s=self.timeout,
                retry=RetryPolicy(max_attempts=self.retries + 1, backoff_initial_s=0.2, backoff_max_s=2.0),
                stats=self._stats,
            )
        payload = {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": LLM_SYSTEM_PROMPT},
                {"role": "user", "content": f"At most {self.max_spans} spans.\nPassage: {text}"},
            ],
        }
        try:
            return self._client.post("/chat/completions", payload, chat_text)
        except EndpointError as exc:
            raise ExtractorError(f"LLM span extraction failed ({self.url}): {exc}") from exc

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

EXTRACTORS: dict[str, Callable[..., SpanExtractor]] = {}


def register_extractor(name: str, factory: Callable[..., SpanExtractor]) -> None:
    """Add an extractor factory under ``name`` (names are unique)."""
    if name in EXTRACTORS:
        raise ValueError(f"Extractor '{name}' is already registered")
    EXTRACTORS[name] = factory


register_extractor("rule", RuleSpanExtractor)
register_extractor("spacy", SpacySpanExtractor)
register_extractor("llm", LLMSpanExtractor)


def make_extractor(name: str, **options: Any) -> SpanExtractor:
    """Build the extractor registered as ``name`` with its options."""
    try:
        factory = EXTRACTORS[name]
    except KeyError:
        raise ValueError(f"Unknown extractor '{name}'; registered: {sorted(EXTRACTORS)}") from None
    return factory(**options)
