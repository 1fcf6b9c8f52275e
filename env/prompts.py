"""Prompt helpers of the search environment.

The instruction text itself lives in one place, :mod:`masksearch.data.prompts` (``QA_TEMPLATE``,
``qa_messages``); training rows already carry their rendered chat messages. The env only needs
(a) messages for a free-form question (standalone chat/eval) and (b) the
``SearchEnvConfig.system_prompt`` override.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from masksearch.data.prompts import QA_TEMPLATE, qa_messages

__all__ = ["apply_system_prompt", "build_messages"]


def apply_system_prompt(
    messages: Iterable[Mapping[str, Any]], system_prompt: str | None
) -> list[dict[str, Any]]:
    """Copy ``messages``; when ``system_prompt`` is set, replace the system message or prepend one.

    >>> apply_system_prompt([{"role": "user", "content": "q"}], "S")
    [{'role': 'system', 'content': 'S'}, {'role': 'user', 'content': 'q'}]
    >>> apply_system_prompt([{"role": "system", "content": "old"}, {"role": "user", "content": "q"}], "S")[0]
    {'role': 'system', 'content': 'S'}
    >>> apply_system_prompt([{"role": "user", "content": "q"}], None)
    [{'role': 'user', 'content': 'q'}]
    """
    out = [dict(m) for m in messages]
    if system_prompt is None:
        return out
    if out and out[0].get("role") == "system":
        out[0]["content"] = system_prompt
    else:
        out.insert(0, {"role": "system", "content": system_prompt})
    return out


def build_messages(
    question: str, system_prompt: str | None = None, *, one_shot: bool = True
) -> list[dict[str, Any]]:
    """Chat messages for a free-form question: the QA template of :mod:`masksearch.data.prompts`
    (with its worked example unless ``one_shot=False``), or ``system_prompt`` as system message.

    >>> build_messages("Who wrote Hamlet?", "S")
    [{'role': 'system', 'content': 'S'}, {'role': 'user', 'content': 'Question: Who wrote Hamlet?'}]
    """
    messages = qa_messages(question, one_shot=one_shot, template=QA_TEMPLATE)
    return apply_system_prompt(messages, system_prompt)
