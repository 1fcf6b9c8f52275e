"""Evaluation data: RL parquet files, raw QA files, and the built-in FanOutQA dev set.

:func:`load_eval_dataset` accepts

- a parquet file in verl's RL schema (``masksearch qa prepare`` output, or Search-R1's
  ``{data_source, prompt, reward_model.ground_truth.target}`` files): prompts are used as stored;
- a raw QA file (``.jsonl``/``.json``, or a parquet without a ``prompt`` column) with
  ``question`` + ``golden_answers``/``answer``/``answers``: rendered with the QA prompt of
  :mod:`masksearch.data.prompts`, exactly as ``masksearch qa prepare`` would;
- a built-in set name, ``fanoutqa:dev`` (the dev split shipped in the ``fanoutqa`` wheel).

Rows without any gold answer (or without a prompt) are skipped and counted per data source.
Every sample gets a stable id ``<dataset>:<row>:<hash>``; the hash covers the prompt and golds,
so an edited row is evaluated again instead of being taken from an old run.

Built-in sets (FanOutQA and how its answers are flattened) are read by
:mod:`masksearch.data.qa_sets`, shared with ``masksearch qa prepare``; their names are re-exported.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masksearch.data.qa_sets import (
    BUILTIN_SETS,
    builtin_qa_records,
    fanoutqa_answer_text,
    fanoutqa_records,
    is_builtin_qa_source,
)

__all__ = [
    "BUILTIN_SETS",
    "EvalDataset",
    "EvalSample",
    "builtin_qa_records",
    "fanoutqa_answer_text",
    "fanoutqa_records",
    "is_builtin_qa_source",
    "load_eval_dataset",
]


@dataclass(frozen=True)
class EvalSample:
    """One question to evaluate.

    Attributes:
        id: stable id (``<dataset>:<row>:<hash>``), the resume key.
        dataset: the dataset key (file stem) it came from.
        data_source: the row's ``data_source`` (results are grouped by it).
        messages: chat messages of the prompt.
        golds: gold answer aliases.
        extra_info: the row's extra info (RAMP rows need ``masked_text``).
        question: the question text (for people reading trajectories).
    """

    id: str
    dataset: str
    data_source: str
    messages: list[dict[str, Any]]
    golds: list[str]
    extra_info: dict[str, Any] = field(default_factory=dict)
    question: str = ""


@dataclass
class EvalDataset:
    """The samples of one ``--data`` entry, and what was skipped (per data source and reason)."""

    name: str
    path: str
    samples: list[EvalSample]
    skipped: Counter[str] = field(default_factory=Counter)
    skip_reasons: Counter[str] = field(default_factory=Counter)


# --------------------------------------------------------------------------- loading
def _dataset_key(spec: str) -> str:
    if is_builtin_qa_source(spec):
        return spec.strip().lower().replace(":", "_")
    name = Path(spec).name
    for suffix in (".parquet", ".jsonl", ".json"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _fingerprint(messages: Sequence[Mapping[str, Any]], golds: Sequence[str]) -> str:
    blob = json.dumps([list(messages), list(golds)], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:8]


def _plain(value: Any) -> Any:
    """numpy arrays / pandas leftovers -> lists and dicts."""
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        value = value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _question_of(messages: Sequence[Mapping[str, Any]], extra_info: Mapping[str, Any]) -> str:
    question = extra_info.get("question")
    if isinstance(question, str) and question.strip():
        return question.strip()
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


def _rl_rows(rows: Sequence[Mapping[str, Any]], key: str, spec: str) -> EvalDataset:
    from masksearch.rewards.answer import as_gold_list

    dataset = EvalDataset(name=key, path=spec, samples=[])
    for i, raw in enumerate(rows):
        row = _plain(dict(raw))
        source = str(row.get("data_source") or key)
        messages = row.get("prompt")
        reward_model = row.get("reward_model") or {}
        golds = as_gold_list(reward_model.get("ground_truth") if isinstance(reward_model, Mapping) else None)
        extra = row.get("extra_info") if isinstance(row.get("extra_info"), Mapping) else {}
        if not isinstance(messages, list) or not messages:
            dataset.skipped[source] += 1
            dataset.skip_reasons["no_prompt"] += 1
            continue
        if not golds:
            dataset.skipped[source] += 1
            dataset.skip_reasons["no_answer"] += 1
            continue
        messages = [{"role": str(m.get("role")), "content": str(m.get("content") or "")} for m in messages]
        dataset.samples.append(
            EvalSample(
                id=f"{key}:{i}:{_fingerprint(messages, golds)}",
                dataset=key,
                data_source=source,
                messages=messages,
                golds=golds,
                extra_info=dict(extra),
                question=_question_of(messages, extra),
            )
        )
    return dataset


def _qa_records(records: Sequence[Mapping[str, Any]], key: str, spec: str, one_shot: bool) -> EvalDataset:
    """Raw QA records through ``qa prepare``'s own conversion (same prompt, same skip rules)."""
    from masksearch.data.qa import default_data_source, prepare_qa

    source = BUILTIN_SETS.get(spec.strip().lower()) or default_data_source(spec)
    rows, summary = prepare_qa(records, data_source=source, split="eval", one_shot=one_shot)
    dataset = _rl_rows(rows, key, spec)
    skipped = {reason: n for reason, n in summary.skipped.items() if n}
    dataset.skip_reasons.update(skipped)
    if skipped:
        dataset.skipped[source] += sum(skipped.values())
    return dataset


def load_eval_dataset(spec: str | os.PathLike[str], *, one_shot: bool = True) -> EvalDataset:
    """Load one ``--data`` entry (see the module docstring for what is accepted).

    Args:
        spec: a ``.parquet``/``.jsonl``/``.json`` path or a built-in name (``fanoutqa:dev``).
        one_shot: include the worked example when rendering prompts for raw QA records.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be read or has an unsupported type.
    """
    from masksearch.data.qa import read_qa_records

    spec = str(spec)
    key = _dataset_key(spec)
    if is_builtin_qa_source(spec):
        return _qa_records(list(builtin_qa_records(spec)), key, spec, one_shot)
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {spec}")
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise ValueError(f"{path}: cannot read parquet ({type(exc).__name__}: {exc})") from None
        if "prompt" in table.column_names:
            return _rl_rows(table.to_pylist(), key, spec)
        return _qa_records(table.to_pylist(), key, spec, one_shot)
    try:
        records = list(read_qa_records(path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    return _qa_records(records, key, spec, one_shot)
