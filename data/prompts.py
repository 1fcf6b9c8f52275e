"""Prompt templates for RAMP and QA rows — the one place the instruction text lives.

Both the RAMP builder and ``qa prepare`` render their chat messages here, so the tag grammar the
model is taught (``<think>``, ``<search>``, ``<information>``, ``<answer>``) is written once and
matches what the reward and the agent loop parse. A template can be replaced from a JSON file
(``load_prompt_template``) without touching code.

The optional one-shot example is appended to the system message rather than sent as earlier chat
turns: small instruction models emit no tags at all without a worked example, and a fake assistant
turn containing ``<information>`` would teach the model to write observations itself.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, fields, replace
from pathlib import Path

from masksearch.core.tokens import MASK_TOKEN

# The verl agent loop that runs the rows (their ``agent_name``); masksearch.env registers it under this name.
DEFAULT_AGENT_NAME = "masksearch_agent"

_TAG_RULES = (
    "You must reason inside <think> and </think> first every time you get new information. "
    "If you find you lack some knowledge, you can call a search engine by <search> query </search>, "
    "and it will return the top searched results between <information> and </information>. "
    "You can search as many times as you want."
)

RAMP_SYSTEM = (
    "You are given a passage in which some spans have been replaced by " + MASK_TOKEN + ". "
    "Recover the original text of every " + MASK_TOKEN + ". " + _TAG_RULES + " "
    "When you have recovered all of them, give the filled spans inside <answer> and </answer>, "
    "in the order the masks appear, one per line, with nothing else."
)

RAMP_USER = "{title_line}Passage: {masked_text}\nNumber of masks: {mask_num}"

RAMP_EXAMPLE = (
    "Example.\n"
    "Passage: The Eiffel Tower was designed by the engineering company of [mask] and completed in "
    "[mask].\nNumber of masks: 2\n"
    "Assistant: <think>I need the company that designed the Eiffel Tower and the year it was "
    "completed.</think>\n<search>Eiffel Tower designer company completion year</search>\n"
    "<information>Doc 1(Title: Eiffel Tower) The tower was built by the company of Gustave Eiffel "
    "and completed in 1889.</information>\n"
    "<think>The company is Gustave Eiffel's and the year is 1889.</think>\n"
    "<answer>\nGustave Eiffel\n1889\n</answer>"
)

QA_SYSTEM = (
    "Answer the given question. " + _TAG_RULES + " "
    "If you find no further external knowledge needed, you can directly provide the answer inside "
    "<answer> and </answer>, without detailed illustrations."
)

QA_USER = "Question: {question}"

QA_EXAMPLE = (
    "Example.\nQuestion: In which city was the composer of the opera Tosca born?\n"
    "Assistant: <think>First I need the composer of Tosca.</think>\n<search>composer of Tosca</search>\n"
    "<information>Doc 1(Title: Tosca) Tosca is an opera in three acts by Giacomo Puccini.</information>\n"
    "<think>Now the birthplace of Giacomo Puccini.</think>\n<search>Giacomo Puccini birthplace</search>\n"
    "<information>Doc 1(Title: Giacomo Puccini) Puccini was born in Lucca, Italy, in 1858.</information>\n"
    "<answer> Lucca </answer>"
)


@dataclass(frozen=True)
class PromptTemplate:
    """A system message, a user message format string, and a worked example.

    ``user`` is a ``str.format`` string; RAMP fills ``title_line``, ``masked_text``, ``mask_num``,
    QA fills ``question``. Unused fields are ignored, so a custom template may drop any of them.
    """

    system: str
    user: str
    example: str = ""

    def messages(self, *, one_shot: bool = True, **fields_: object) -> list[dict[str, str]]:
        """Chat messages for one row: a system message (plus example) and a user message."""
        system = self.system
        if one_shot and self.example:
            system = f"{system}\n\n{self.example}"
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": self.user.format_map(_DefaultEmpty(fields_))},
        ]


class _DefaultEmpty(dict):
    """Missing format fields render as empty text instead of raising ``KeyError``."""

    def __missing__(self, key: str) -> str:
        return ""


RAMP_TEMPLATE = PromptTemplate(system=RAMP_SYSTEM, user=RAMP_USER, example=RAMP_EXAMPLE)
QA_TEMPLATE = PromptTemplate(system=QA_SYSTEM, user=QA_USER, example=QA_EXAMPLE)


def load_prompt_template(path: str | Path | None, base: PromptTemplate) -> PromptTemplate:
    """Override ``base`` with the keys ``system``, ``user``, ``example`` of a JSON file (none: ``base``).

    Raises:
        ValueError: the file is not a JSON object or has keys other than those three.
    """
    if not path:
        return base
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    allowed = {f.name for f in fields(PromptTemplate)}
    if not isinstance(data, dict) or not set(data) <= allowed:
        raise ValueError(f"{path}: expected a JSON object with keys among {sorted(allowed)}")
    if not all(isinstance(v, str) for v in data.values()):
        raise ValueError(f"{path}: every template value must be a string")
    return replace(base, **data)


def add_prompt_args(p: argparse.ArgumentParser, template: str, *, show_title: bool = False) -> None:
    """The prompt flags of ``ramp build`` and ``qa prepare``: ``--one-shot``, (``--show-title``),
    ``--prompt-file`` over the built-in ``template`` ("RAMP" or "QA"), ``--agent-name``."""
    p.add_argument(
        "--one-shot",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Put a worked example in the system prompt (default: on).",
    )
    if show_title:
        p.add_argument(
            "--show-title",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="Show the passage title in the prompt (default: on).",
        )
    p.add_argument(
        "--prompt-file",
        default=None,
        help=f"JSON overriding the template (system/user/example) (default: the built-in {template} template).",
    )
    p.add_argument(
        "--agent-name",
        default=DEFAULT_AGENT_NAME,
        help=f"verl agent loop that runs these rows (the rows' agent_name) (default: {DEFAULT_AGENT_NAME}).",
    )


def ramp_messages(
    masked_text: str,
    mask_num: int,
    *,
    title: str | None = None,
    one_shot: bool = True,
    template: PromptTemplate = RAMP_TEMPLATE,
) -> list[dict[str, str]]:
    """Messages asking the model to fill the masks of ``masked_text``.

    >>> ramp_messages("[mask] is a city.", 1, one_shot=False)[1]["content"]
    'Passage: [mask] is a city.\\nNumber of masks: 1'
    """
    title_line = f"Title: {title}\n" if title else ""
    return template.messages(
        one_shot=one_shot, title_line=title_line, masked_text=masked_text, mask_num=mask_num
    )


def qa_messages(
    question: str, *, one_shot: bool = True, template: PromptTemplate = QA_TEMPLATE
) -> list[dict[str, str]]:
    """Messages asking the model to answer ``question`` with search.

    >>> qa_messages("Who wrote Hamlet?", one_shot=False)[1]["content"]
    'Question: Who wrote Hamlet?'
    """
    return template.messages(one_shot=one_shot, question=question)
