"""Judging: one finished episode → a kept or rejected record (the shared grammar + the training reward)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from masksearch.core.errors import one_line
from masksearch.core.grammar import validate_format
from masksearch.env.session import TurnRecord
from masksearch.sft.synthesis.config import ENDPOINT_FAILED, WRONG_ANSWER
from masksearch.sft.synthesis.items import Episode, SynthesisItem

__all__ = ["base_record", "failed_record", "judge_episode", "segments_of"]


def segments_of(turns: Iterable[TurnRecord]) -> list[dict[str, str]]:
    """Model turns as ``assistant`` messages and observations as ``tool`` messages, in order."""
    out: list[dict[str, str]] = []
    for turn in turns:
        out.append({"role": "assistant", "content": turn.generated_text})
        if turn.observation is not None:
            out.append({"role": "tool", "content": turn.observation})
    return out


def base_record(item: SynthesisItem, teacher: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": item.id,
        "data_source": item.data_source,
        "kind": item.kind,
        "mask_num": item.mask_num,
        "prompt": item.prompt,
        "ground_truth": item.ground_truth,
        "extra_info": item.extra_info,
        "teacher": teacher,
    }


def judge_episode(
    item: SynthesisItem, episode: Episode, answer_check: str, teacher: dict[str, Any]
) -> dict[str, Any]:
    """The record of one finished episode.

    Kept when the response passes :func:`masksearch.core.grammar.validate_format` and
    :func:`masksearch.rewards.compute_score` (the function verl loads as the training reward) gives
    ``acc == 1`` with ``answer_reward=answer_check``. Otherwise rejected with, in this order, the
    teacher's own reason (``episode.reason``), the grammar's reason, or "wrong answer".
    """
    from masksearch.rewards import compute_score

    segments = segments_of(episode.turns)
    response = "".join(s["content"] for s in segments)
    check = validate_format(response)
    score = compute_score(
        item.data_source, response, item.ground_truth, item.extra_info, answer_reward=answer_check
    )
    kept = bool(check.ok) and score["acc"] >= 1.0
    if kept:
        reason = "ok"
    elif episode.reason:
        reason = episode.reason
    else:
        reason = check.reason if not check.ok else WRONG_ANSWER
    return {
        **base_record(item, teacher),
        "status": "kept" if kept else "rejected",
        "reason": reason,
        "detail": "" if kept else f"stop={episode.stop_reason} pred={score['pred']!r}",
        "segments": segments,
        "response": response,
        "answer": score["pred"],
        "answer_score": score["answer_score"],
        "acc": float(score["acc"]),
        "format_ok": bool(check.ok),
        "num_searches": int(score["num_searches"]),
        "num_turns": len(episode.turns),
        "stop_reason": episode.stop_reason,
        "trace": episode.trace,
    }


def failed_record(item: SynthesisItem, error: BaseException, teacher: dict[str, Any]) -> dict[str, Any]:
    return {
        **base_record(item, teacher),
        "status": "rejected",
        "reason": ENDPOINT_FAILED,
        "detail": one_line(error, 500),
        "segments": [],
        "response": "",
        "answer": "",
        "answer_score": 0.0,
        "acc": 0.0,
        "format_ok": False,
        "num_searches": 0,
        "num_turns": 0,
        "stop_reason": "failed",
        "trace": {},
    }
