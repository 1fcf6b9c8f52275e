"""The three teacher agents of the SFT synthesis: planner, query rewriter, observer.

Each agent is one chat call to an OpenAI-compatible endpoint: a fixed system prompt (below, the one
place the wording lives), a user message built from the task and the notes so far, and a small
line-oriented reply format that is parsed here. A reply that cannot be parsed raises
:class:`AgentOutputError`; the orchestrator retries it and finally records the item as failed.

Reply formats (keys are case-insensitive, one per line; ``ANSWER:`` may span several lines)::

    planner   THOUGHT: <what is needed>          rewriter   QUERY: <keyword query>
              1. <sub-question>
              2. <sub-question>                  observer   NOTE: <what the results establish>
                                                            ANSWER: <final answer>   (or)
                                                            NEXT: <next information need>

The agents never write the tags of the grammar; the orchestrator assembles their texts into
``<think>…</think><search>…</search>`` / ``<answer>…</answer>`` turns, and any tag an agent
writes anyway is removed (:func:`clean`) so it cannot break the trajectory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "OBSERVER_SYSTEM",
    "PLANNER_SYSTEM",
    "REWRITER_SYSTEM",
    "AgentOutputError",
    "ObserverReply",
    "Plan",
    "Task",
    "clean",
    "observer_messages",
    "parse_observer",
    "parse_plan",
    "parse_query",
    "planner_messages",
    "rewriter_messages",
]

TaskKind = Literal["qa", "ramp"]

PLANNER_SYSTEM = (
    "You are the planner of a team that solves tasks with a Wikipedia search engine. "
    "Break the task into the fewest sub-questions that a search engine can answer, in the order "
    "they must be solved (later ones may depend on earlier answers). Do not answer them. "
    "Reply in exactly this format:\n"
    "THOUGHT: one or two sentences on what information is needed\n"
    "1. first sub-question\n"
    "2. second sub-question\n"
    "Use at most {max_sub_questions} sub-questions."
)

REWRITER_SYSTEM = (
    "You are the query rewriter of a team that solves tasks with a Wikipedia search engine. "
    "Turn the current information need into one short keyword query. Use what is already known "
    "to make it specific (replace 'the composer' by the name found). "
    "Reply with one line: QUERY: <query>"
)

OBSERVER_SYSTEM = (
    "You are the observer of a team that solves tasks with a Wikipedia search engine. Read the "
    "search results for the current information need, note what they establish, and decide "
    "whether the task can be completed. Reply in exactly this format:\n"
    "NOTE: what the results tell us, in one or two sentences\n"
    "then either\n"
    "ANSWER: the final answer (only when everything the task asks for is known)\n"
    "or\n"
    "NEXT: the next information need (when something is still missing)"
)

_RAMP_ANSWER_RULE = (
    " For a passage with [mask] spans, the ANSWER lists the original text of every [mask] in the "
    "order they appear, one per line, and nothing else."
)
_QA_ANSWER_RULE = " For a question, the ANSWER is a short entity, date or phrase, without explanation."
_LAST_STEP = " This is the last step: you must reply with NOTE and ANSWER now."

_TAG_RE = re.compile(r"</?(?:think|search|information|answer)>", re.IGNORECASE)
_KEY_RE = re.compile(r"^\s*\**\s*(THOUGHT|QUERY|NOTE|ANSWER|NEXT)\s*\**\s*[:：]\s*(.*)$", re.IGNORECASE)
_NUMBERED_RE = re.compile(r"^\s*(?:\d{1,2}\s*[.)]|[-*•])\s+(.*\S)\s*$")
_MAX_QUERY_CHARS = 300


class AgentOutputError(ValueError):
    """An agent's reply does not follow its format (the call is retried, then the item fails)."""


@dataclass(frozen=True)
class Task:
    """What the team works on: a QA question or a RAMP masked passage.

    Attributes:
        kind: ``qa`` or ``ramp``.
        text: the question, or the masked passage.
        mask_num: number of ``[mask]`` spans (RAMP), 0 for QA.
    """

    kind: TaskKind
    text: str
    mask_num: int = 0

    def describe(self) -> str:
        if self.kind == "ramp":
            return f"Passage with masked spans:\n{self.text}\nNumber of masks: {self.mask_num}"
        return f"Question: {self.text}"


@dataclass(frozen=True)
class Plan:
    thought: str
    sub_questions: list[str]


@dataclass(frozen=True)
class ObserverReply:
    note: str
    answer: str | None = None
    next_need: str | None = None
    answer_lines: list[str] = field(default_factory=list)


def clean(text: str) -> str:
    """Remove grammar tags and collapse whitespace (an agent's text inside a turn).

    >>> clean("  <think>Puccini</think> wrote\\n Tosca ")
    'Puccini wrote Tosca'
    """
    return " ".join(_TAG_RE.sub(" ", text or "").split())


def _answer_rule(task: Task) -> str:
    return _RAMP_ANSWER_RULE if task.kind == "ramp" else _QA_ANSWER_RULE


def _notes_block(notes: list[str]) -> str:
    if not notes:
        return "Known so far: nothing yet."
    return "Known so far:\n" + "\n".join(f"- {n}" for n in notes)


# ----------------------------------------------------------------------------------- planner
def planner_messages(task: Task, max_sub_questions: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": PLANNER_SYSTEM.format(max_sub_questions=max_sub_questions)},
        {"role": "user", "content": task.describe()},
    ]


def parse_plan(text: str, max_sub_questions: int) -> Plan:
    """Read ``THOUGHT:`` and the numbered sub-questions.

    >>> p = parse_plan("THOUGHT: need two facts\\n1. Who composed Tosca?\\n2) Where was he born?", 4)
    >>> p.thought, p.sub_questions
    ('need two facts', ['Who composed Tosca?', 'Where was he born?'])

    Raises:
        AgentOutputError: no sub-question.
    """
    thought = ""
    subs: list[str] = []
    for line in (text or "").splitlines():
        key = _KEY_RE.match(line)
        if key and key.group(1).upper() == "THOUGHT":
            thought = clean(key.group(2))
            continue
        numbered = _NUMBERED_RE.match(line)
        if numbered:
            sub = clean(numbered.group(1))
            if sub:
                subs.append(sub)
    if not subs:
        raise AgentOutputError(f"planner reply has no numbered sub-question: {_preview(text)}")
    return Plan(thought=thought, sub_questions=subs[:max_sub_questions])


# ----------------------------------------------------------------------------------- rewriter
def rewriter_messages(task: Task, need: str, notes: list[str]) -> list[dict[str, str]]:
    user = f"{task.describe()}\n\n{_notes_block(notes)}\n\nCurrent need: {need}"
    return [{"role": "system", "content": REWRITER_SYSTEM}, {"role": "user", "content": user}]


def parse_query(text: str) -> str:
    """The query of ``QUERY: …`` (or the first non-empty line), cleaned.

    >>> parse_query("QUERY: Giacomo Puccini birthplace")
    'Giacomo Puccini birthplace'

    Raises:
        AgentOutputError: empty or overlong query.
    """
    lines = [line for line in (text or "").splitlines() if line.strip()]
    query = ""
    for line in lines:
        key = _KEY_RE.match(line)
        if key and key.group(1).upper() == "QUERY":
            query = key.group(2)
            break
    else:
        if lines:
            query = lines[0]
    query = clean(query).strip("\"'` ")
    if not query or len(query) > _MAX_QUERY_CHARS:
        raise AgentOutputError(f"rewriter reply has no usable query: {_preview(text)}")
    return query


# ----------------------------------------------------------------------------------- observer
def observer_messages(
    task: Task,
    need: str,
    query: str,
    observation: str,
    notes: list[str],
    remaining: list[str],
    *,
    last_step: bool,
) -> list[dict[str, str]]:
    system = OBSERVER_SYSTEM + _answer_rule(task) + (_LAST_STEP if last_step else "")
    todo = "Still planned: " + ("; ".join(remaining) if remaining else "nothing")
    user = (
        f"{task.describe()}\n\n{_notes_block(notes)}\n{todo}\n\n"
        f"Current need: {need}\nQuery: {query}\nSearch results:\n{observation.strip()}"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_observer(text: str) -> ObserverReply:
    """Read ``NOTE:``, then ``ANSWER:`` (possibly several lines) or ``NEXT:``.

    >>> r = parse_observer("NOTE: Puccini wrote it.\\nANSWER:\\nPuccini\\n1858")
    >>> r.note, r.answer_lines
    ('Puccini wrote it.', ['Puccini', '1858'])
    >>> parse_observer("NOTE: x\\nNEXT: where was he born").next_need
    'where was he born'

    Raises:
        AgentOutputError: neither ``ANSWER`` nor ``NEXT``.
    """
    note = ""
    answer_lines: list[str] | None = None
    next_need: str | None = None
    current: str | None = None
    for line in (text or "").splitlines():
        key = _KEY_RE.match(line)
        if key:
            current = key.group(1).upper()
            value = key.group(2)
            if current == "NOTE":
                note = clean(value)
            elif current == "ANSWER":
                answer_lines = [clean(value)] if clean(value) else []
            elif current == "NEXT":
                next_need = clean(value) or None
            continue
        if current == "ANSWER" and answer_lines is not None and clean(line):
            answer_lines.append(clean(line))
        elif current == "NOTE" and clean(line):
            note = f"{note} {clean(line)}".strip()
    if answer_lines:
        return ObserverReply(note=note, answer="\n".join(answer_lines), answer_lines=answer_lines)
    if next_need:
        return ObserverReply(note=note, next_need=next_need)
    raise AgentOutputError(f"observer reply has neither ANSWER nor NEXT: {_preview(text)}")


def _preview(text: str | None, limit: int = 120) -> str:
    flat = " ".join((text or "").split())
    return repr(flat[:limit] + ("…" if len(flat) > limit else ""))
