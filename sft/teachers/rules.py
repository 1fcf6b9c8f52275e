"""The offline teacher: planner, query rewriter and observer as deterministic rules over our retriever.

No LLM is needed. The turns go through the env's :class:`~masksearch.env.session.SearchSession`
with the student's tokenizer and the run's env settings, so a trajectory is token for token what
an RL rollout with the same text would be (observations included).

* **Planner** — RAMP: one sub-question per ``[mask]``: the mask's sentence (from the masked
  passage) and the title. QA: the question itself.
* **Query rewriter** — keyword queries, best first: the title plus the mask's sentence with the
  masks removed (at most :data:`MAX_QUERY_WORDS` words; on the embedded corpus the top-1 document
  holds the gold span for 99.6% of masks), then the title plus the words around the mask, then
  those words alone. QA: the question's content words, then the question as written.
* **Observer** — accepts a fill only when the observation the env appended (truncated as RL
  truncates it) contains it and it is the gold span (a whole-word match, case and punctuation
  ignored: :func:`masksearch.rewards.answer.mentions`, the reward's grounding check). One search
  per mask, as the plan says; only when the turns left (``max_turns``, the answer turn included)
  cannot hold one search per remaining mask does it take a fill it already saw in an earlier
  observation. A miss makes the rewriter try the next query while the turn budget allows; masks
  are retried round-robin so none starves the others.
* The ``<think>`` text says what is looked for and in which document it was found; the answer
  lists the fills one per line (RAMP) or `` answer `` (QA), as the prompts ask.

When some fill is in no observation, the episode ends without an answer and the judge records
:data:`~masksearch.sft.synthesis.config.FILL_NOT_FOUND`; when the response budget runs out first,
:data:`LENGTH_BUDGET`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from masksearch.core.tokens import MASK_TOKEN
from masksearch.env.session import AgentState, SearchSession, StopReason
from masksearch.rewards.answer import mentions
from masksearch.rewards.hybrid import gold_groups
from masksearch.rewards.search_guard import observations_of
from masksearch.search_tool.observation import parse_observation
from masksearch.sft.synthesis.config import FILL_NOT_FOUND, SynthesisConfig
from masksearch.sft.synthesis.items import Episode, SynthesisItem
from masksearch.sft.synthesis.search import SearchFn

__all__ = [
    "LENGTH_BUDGET",
    "MAX_QUERY_WORDS",
    "MaskSlot",
    "RulesTeacher",
    "find_in_observation",
    "plan_masks",
    "query_variants",
]

#: Rejection reason: the response budget ran out before the answer was written.
LENGTH_BUDGET = "length budget"
#: Longest keyword query the rewriter writes.
MAX_QUERY_WORDS = 20
#: Words on each side of a mask in the "around the mask" queries and the think text.
WINDOW_WORDS = 6
#: Words on each side of a mask in the plan's snippet.
SNIPPET_WORDS = 3

_MASK_RE = re.compile(re.escape(MASK_TOKEN), re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_WORD = re.compile(
    r"[^\W_](?:[\w'’\-]|\.(?=\w))*", re.UNICODE
)  # "7.7" and "U.S" stay whole; a final "." goes
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "from",
        "by",
        "with",
        "and",
        "or",
        "but",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "does",
        "do",
        "did",
        "that",
        "this",
        "these",
        "those",
        "it",
        "its",
        "as",
        "into",
        "than",
        "then",
    ]
)


@dataclass(frozen=True)
class MaskSlot:
    """One ``[mask]`` of a passage: its number (1-based), sentence and the words around it."""

    number: int
    sentence: str
    before: str
    after: str

    @property
    def snippet(self) -> str:
        """The mask in its immediate context, e.g. ``"epicenter in the [mask] about 200 km"``."""
        before = self.before.split()[-SNIPPET_WORDS:]
        after = self.after.split()[:SNIPPET_WORDS]
        return " ".join([*before, MASK_TOKEN, *after])


def _sentences(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return spans


def _words(text: str) -> list[str]:
    return _WORD.findall(_MASK_RE.sub(" ", text))


def plan_masks(masked_text: str) -> list[MaskSlot]:
    """The planner: one :class:`MaskSlot` per ``[mask]``, in order."""
    sentences = _sentences(masked_text)
    slots = []
    for number, m in enumerate(_MASK_RE.finditer(masked_text), start=1):
        s0, s1 = next(((a, b) for a, b in sentences if a <= m.start() < b + 1), (0, len(masked_text)))
        before = _words(masked_text[s0 : m.start()])[-WINDOW_WORDS:]
        after = _words(masked_text[m.end() : s1])[:WINDOW_WORDS]
        slots.append(MaskSlot(number, masked_text[s0:s1].strip(), " ".join(before), " ".join(after)))
    return slots


def _clip(words: list[str], limit: int = MAX_QUERY_WORDS) -> str:
    return " ".join(words[:limit])


def query_variants(title: str, slot: MaskSlot | None = None, question: str | None = None) -> list[str]:
    """The rewriter: keyword queries for a mask (RAMP) or a question (QA), best first, no repeats."""
    title_words = _words(title)
    if slot is not None:
        sentence = _words(slot.sentence)
        window = _words(slot.before) + _words(slot.after)
        candidates = [
            _clip(title_words + sentence),
            _clip(title_words + window),
            _clip(window),
            _clip(sentence),
        ]
    else:
        words = _words(question or "")
        content = [w for w in words if w.lower() not in _STOPWORDS]
        candidates = [_clip(content), _clip(words), _clip(title_words + content)]
    seen, out = set(), []
    for q in candidates:
        key = q.lower()
        if q and key not in seen:
            seen.add(key)
            out.append(q)
    return out


def find_in_observation(observation: str, fills: list[str]) -> tuple[str, int, str] | None:
    """The observer's check: ``(fill, doc number, doc title)`` of the first fill a document of the
    observation :func:`~masksearch.rewards.answer.mentions` (its line as the model read it, the
    reward's grounding check), or ``None``; an observation without documents counts as doc 1."""
    body = "".join(observations_of(observation)) or observation  # inside <information>
    docs = [(d.number, d.title, str(d)) for d in parse_observation(body)] or [(1, "", body)]
    for fill in fills:
        for number, title, text in docs:
            if mentions(text, fill):
                return fill, number, title
    return None


def _quote(text: str, limit: int = 12) -> str:
    words = text.split()
    return " ".join(words[:limit]) + (" …" if len(words) > limit else "")


@dataclass
class _Need:
    """One thing to find: a mask (or the QA answer), its gold fills and the queries left."""

    label: str
    golds: list[str]
    queries: list[str]
    tried: int = 0
    seen: tuple[str, int, str] | None = None  # first observation that holds a fill
    found: tuple[str, int, str] | None = None  # accepted fill
    log: list[dict[str, Any]] = field(default_factory=list)


class RulesTeacher:
    """Deterministic planner / rewriter / observer (see the module docstring)."""

    def __init__(self, tokenizer: Any, search: SearchFn, config: SynthesisConfig):
        self.tokenizer = tokenizer
        self.search = search
        self.config = config
        self.env_config = config.env_config()

    # ---------------------------------------------------------------- planning
    def _needs(self, item: SynthesisItem) -> tuple[list[_Need], str]:
        title = str(item.extra_info.get("title") or "")
        golds = gold_groups(item.ground_truth, item.kind)
        if item.kind == "ramp":
            slots = plan_masks(item.task_text)
            if len(slots) != len(golds):
                return [], f"{len(slots)} masks in the passage but {len(golds)} gold spans"
            needs, firsts = [], set()
            for slot, gold in zip(slots, golds, strict=True):
                queries = query_variants(title, slot)
                # masks sharing a sentence: each starts with a query of its own (the words around it)
                queries.sort(key=lambda q: q.lower() in firsts)
                firsts.add(queries[0].lower())
                needs.append(_Need(f"mask {slot.number}", gold, queries))
            plan = "; ".join(f'({s.number}) "{s.snippet}"' for s in slots)
            about = f" about {title}" if title else ""
            think = f"The passage{about} has {len(slots)} mask(s), one search each: {plan}."
            return needs, think
        need = _Need("the answer", golds[0], query_variants(title, question=item.task_text))
        return [need], f"I need to find: {_quote(item.task_text, 30)}"

    # ---------------------------------------------------------------- episode
    @staticmethod
    def _accept(need: _Need, step: dict[str, Any]) -> str:
        """The observer accepts the fill seen for ``need``; returns the think sentence."""
        need.found = need.seen
        assert need.found is not None
        fill, doc, doc_title = need.found
        where = f"Doc {doc} ({doc_title})" if doc_title else f"Doc {doc}"
        step["found"].append(need.label)
        return f'{where} gives "{fill}" for {need.label}.'

    def _turn(self, session: SearchSession, text: str) -> AgentState:
        return session.add_generation(self.tokenizer.encode(text, add_special_tokens=False))

    def run(self, item: SynthesisItem) -> Episode:
        needs, think = self._needs(item)
        session = SearchSession(
            self.tokenizer, self.env_config, response_budget=self.config.max_response_tokens
        )
        trace: dict[str, Any] = {"plan": [n.label for n in needs], "steps": []}
        if not needs:
            return Episode([], "unfinished", trace, reason=f"planner: {think}")
        max_searches = self.env_config.max_turns - 1  # the last turn is the answer
        while session.state is AgentState.GENERATING:
            pending = [n for n in needs if n.found is None]
            if not pending:
                break
            if session.num_model_turns >= max_searches:
                break  # no turn left for another search and the answer
            candidates = [n for n in pending if n.tried < len(n.queries)]
            if not candidates:
                break  # every query of every pending mask tried
            target = min(candidates, key=lambda n: n.tried)  # round-robin over pending masks
            query = target.queries[target.tried]
            target.tried += 1
            lead = (
                f"Next, {target.label}" if target.tried == 1 else f"I rephrase the query for {target.label}"
            )
            text = f"<think>{think} {lead}.</think>\n<search>{query}</search>"
            if self._turn(session, text) is not AgentState.SEARCHING:
                break  # length budget
            result = self.search(session.pending_query or query)
            state = session.add_search_result(result.hits, result.error, result.latency_s, result.cached)
            observation = session.turns[-1].observation or ""
            step: dict[str, Any] = {"for": target.label, "query": query, "error": result.error, "found": []}
            for need in pending:  # what this observation holds, for the target and the others
                hit = find_in_observation(observation, need.golds)
                if hit is not None and (need is target or need.seen is None):
                    need.seen = hit
            notes = []
            if find_in_observation(observation, target.golds) is not None:
                notes.append(self._accept(target, step))
            else:
                notes.append(f"The results do not contain {target.label}.")
            # one search per mask; only when the turns left cannot hold that, fills already seen
            # in earlier observations are taken instead of searching for them
            left = max_searches - session.num_model_turns
            waiting = [n for n in needs if n.found is None]
            for need in reversed(waiting):
                if len(waiting) <= left:
                    break
                if need.seen is not None:
                    notes.append(self._accept(need, step))
                    waiting.remove(need)
            trace["steps"].append(step)
            think = " ".join(notes)
            if state is not AgentState.GENERATING:
                break  # turn or length budget
        missing = [n.label for n in needs if n.found is None]
        trace["missing"] = missing
        if missing or session.state is not AgentState.GENERATING:
            stop = session.stop_reason.value if session.stop_reason else "unfinished"
            reason = LENGTH_BUDGET if session.stop_reason is StopReason.LENGTH_BUDGET else None
            reason = reason or (FILL_NOT_FOUND if missing else None)
            return Episode(list(session.turns), stop, trace, reason=reason)
        fills = [n.found[0] for n in needs if n.found is not None]
        if item.kind == "ramp":
            answer = "\n" + "\n".join(fills) + "\n"
            summary = f"All {len(fills)} mask(s) are filled."
        else:
            answer = f" {fills[0]} "
            summary = "That answers the question."
        self._turn(session, f"<think>{think} {summary}</think>\n<answer>{answer}</answer>")
        stop = session.stop_reason.value if session.stop_reason else "unfinished"
        length = session.stop_reason is StopReason.LENGTH_BUDGET
        return Episode(list(session.turns), stop, trace, reason=LENGTH_BUDGET if length else None)
