"""Loading: rows of a RAMP / QA parquet as :class:`SynthesisItem`, and the teacher's :class:`Episode`."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from masksearch.env.session import TurnRecord
from masksearch.sft.agents import Task

__all__ = ["Episode", "SynthesisItem", "load_items", "plain"]


@dataclass(frozen=True)
class SynthesisItem:
    """One input row: its RL prompt, ground truth and the text the teacher works on."""

    id: str
    data_source: str
    kind: str
    prompt: list[dict[str, str]]
    ground_truth: list[Any]
    extra_info: dict[str, Any]
    task_text: str
    mask_num: int

    @property
    def task(self) -> Task:
        return Task(kind=self.kind, text=self.task_text, mask_num=self.mask_num)  # type: ignore[arg-type]


@dataclass
class Episode:
    """What a teacher produced for one item (before filtering).

    ``reason`` is the teacher's own reason when it gave up (e.g. the rules teacher found no
    observation containing a fill); the judge uses it for a rejected record.
    """

    turns: list[TurnRecord]
    stop_reason: str
    trace: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None


def plain(value: Any) -> Any:
    """Parquet / numpy values as plain Python lists and dicts."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):
        return plain(value.tolist())
    return value


def _user_text(prompt: list[dict[str, str]]) -> str:
    users = [m.get("content") or "" for m in prompt if m.get("role") == "user"]
    return users[-1] if users else ""


def load_items(path: str | os.PathLike, limit: int | None = None) -> list[SynthesisItem]:
    """Rows of a RAMP / QA parquet (``masksearch ramp build`` / ``qa prepare``) as items.

    The item id is the row number plus a hash of prompt and ground truth, so it is stable across
    runs and changes when the row does.

    Raises:
        ValueError: a row without ``prompt`` or ground truth, or a RAMP row without its passage.
    """
    import pyarrow.parquet as pq

    from masksearch.rewards import task_kind

    rows = pq.read_table(path).to_pylist()
    if limit is not None:
        rows = rows[: max(0, int(limit))]
    items = []
    for i, row in enumerate(rows):
        prompt = plain(row.get("prompt") or [])
        ground_truth = plain((row.get("reward_model") or {}).get("ground_truth"))
        if not prompt or ground_truth is None:
            raise ValueError(f"{path}: row {i} has no prompt or reward_model.ground_truth")
        if isinstance(ground_truth, str):
            ground_truth = [ground_truth]
        extra = plain(row.get("extra_info") or {})
        data_source = str(row.get("data_source") or "")
        kind = task_kind(data_source)
        if kind == "ramp":
            text = extra.get("masked_text") or ""
            if not text:
                raise ValueError(f"{path}: RAMP row {i} has no extra_info.masked_text")
            mask_num = int(extra.get("mask_num") or text.lower().count("[mask]"))
        else:
            text = extra.get("question") or _user_text(prompt)
            mask_num = 0
        digest = hashlib.sha1(
            json.dumps([prompt, ground_truth], sort_keys=True, ensure_ascii=False).encode("utf-8")
        ).hexdigest()[:10]
        items.append(
            SynthesisItem(
                id=f"{i:06d}-{digest}",
                data_source=data_source,
                kind=kind,
                prompt=prompt,
                ground_truth=list(ground_truth),
                extra_info=extra,
                task_text=text,
                mask_num=mask_num,
            )
        )
    return items
