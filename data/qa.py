"""QA preparation: question/answer files in, verl RL rows (the RAMP row schema) out.

Accepted inputs (JSONL, JSON list or ``{"data": [...]}``, or parquet), one record per question:

- Search-R1 style: ``{"question", "golden_answers": [...]}``
- HotpotQA style: ``{"question", "answer": "..."}``
- generic: ``{"question", "answers": [...]}`` (also ``{"answers": {"text": [...]}}`` as in SQuAD)

``reward_model.ground_truth`` is the list of answer aliases; ``extra_info.mask_num`` is 0, which the
curriculum sampler treats as the easiest level unless told otherwise. Records without a question
or without any answer are skipped and counted.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masksearch.core.logs import module_logger
from masksearch.data.prompts import DEFAULT_AGENT_NAME, QA_TEMPLATE, PromptTemplate, qa_messages
from masksearch.data.schema import make_row

logger = module_logger(__name__)

ANSWER_KEYS = ("golden_answers", "answers", "answer")
SKIP_REASONS = ("no_question", "no_answer")
_SPLIT_SUFFIX = re.compile(r"[_\-.:](train|dev|test|val|validation)$", re.IGNORECASE)


@dataclass
class QASummary:
    read: int = 0
    written: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "written": self.written,
            "skipped": {r: self.skipped.get(r, 0) for r in SKIP_REASONS},
        }


def default_data_source(path: str | Path) -> str:
    """Dataset name from the file name: ``hotpotqa_train.jsonl`` -> ``hotpotqa``.

    >>> default_data_source("/d/nq-dev.parquet"), default_data_source("bamboogle.json")
    ('nq', 'bamboogle')
    """
    name = Path(path).name
    for suffix in (".jsonl", ".json", ".parquet"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return _SPLIT_SUFFIX.sub("", name).lower() or "qa"


def read_qa_records(path: str | Path) -> Iterator[Mapping[str, Any]]:
    """Records of a ``.jsonl``, ``.json`` or ``.parquet`` file, or of a built-in set (``fanoutqa:dev``)."""
    from masksearch.data.qa_sets import builtin_qa_records, is_builtin_qa_source

    if is_builtin_qa_source(path):
        yield from builtin_qa_records(str(path))
        return
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
    elif suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{path}:{n}: not JSON: {exc}") from None
    elif suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, Mapping) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of records or {{'data': [...]}}")
        yield from data
    else:
        raise ValueError(f"{path}: unsupported QA file type {suffix!r} (use .jsonl, .json or .parquet)")


def answer_aliases(record: Mapping[str, Any]) -> list[str]:
    """All answer strings of a record, stripped and de-duplicated in order.

    >>> answer_aliases({"golden_answers": ["Paris", " paris ", "Paris"]}), answer_aliases({"answer": "1889"})
    (['Paris', 'paris'], ['1889'])
    """
    out: list[str] = []
    for key in ANSWER_KEYS:
        value = record.get(key)
        if isinstance(value, Mapping):  # SQuAD: {"text": [...], "answer_start": [...]}
            value = value.get("text")
        values = [value] if isinstance(value, str | int | float) else list(value or [])
        for v in values:
            text = str(v).strip() if isinstance(v, str | int | float) and not isinstance(v, bool) else ""
            if text and text not in out:
                out.append(text)
    return out


def from_rl_row(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """An RL-schema row (ours, or Search-R1's parquet) as a ``{"question", "answers"}`` record.

    The question comes from ``extra_info.question`` (ours) or the text after the last
    ``Question:`` of the last user message (Search-R1's prompts); the answers from
    ``reward_model.ground_truth`` (a list, a string, or Search-R1's ``{"target": [...]}``).
    Records that are not RL rows, or already carry a top-level question, pass through.

    >>> from_rl_row({"prompt": [{"role": "user", "content": "Answer it. Question: Who wrote Tosca?\\n"}],
    ...              "reward_model": {"ground_truth": {"target": ["Puccini"]}}})
    {'question': 'Who wrote Tosca?', 'answers': ['Puccini']}
    """
    if not isinstance(record, Mapping) or record.get("question") or "reward_model" not in record:
        return record
    extra = record.get("extra_info") if isinstance(record.get("extra_info"), Mapping) else {}
    question = extra.get("question") if isinstance(extra.get("question"), str) else None
    if not question:
        users = [m for m in record.get("prompt") or [] if isinstance(m, Mapping) and m.get("role") == "user"]
        text = str(users[-1].get("content") or "") if users else ""
        if "Question:" in text:
            question = text.rsplit("Question:", 1)[1].strip().splitlines()[0].strip() if text else None
    reward = record.get("reward_model") if isinstance(record.get("reward_model"), Mapping) else {}
    truth = reward.get("ground_truth")
    if isinstance(truth, Mapping):
        truth = truth.get("target")
    if hasattr(truth, "tolist"):  # numpy arrays from parquet
        truth = truth.tolist()
    answers = [truth] if isinstance(truth, str) else list(truth or [])
    return {"question": question, "answers": answers}


def prepare_qa(
    records: Iterable[Mapping[str, Any]],
    *,
    data_source: str,
    split: str = "train",
    one_shot: bool = True,
    agent_name: str = DEFAULT_AGENT_NAME,
    template: PromptTemplate = QA_TEMPLATE,
) -> tuple[list[dict[str, Any]], QASummary]:
    """Rows in the shared RL schema, and counts of what was read, written and skipped."""
    summary = QASummary()
    rows: list[dict[str, Any]] = []
    for record in records:
        summary.read += 1
        record = from_rl_row(record)  # our own output and Search-R1's RL parquet read back
        question = record.get("question") if isinstance(record, Mapping) else None
        if not isinstance(question, str) or not question.strip():
            summary.skipped["no_question"] += 1
            continue
        aliases = answer_aliases(record)
        if not aliases:
            summary.skipped["no_answer"] += 1
            continue
        question = question.strip()
        rows.append(
            make_row(
                data_source=data_source,
                prompt=qa_messages(question, one_shot=one_shot, template=template),
                ability="qa",
                ground_truth=aliases,
                extra_info={"mask_num": 0, "question": question, "split": split, "index": len(rows)},
                agent_name=agent_name,
            )
        )
    summary.written = len(rows)
    logger.info("qa prepare %s: %s", data_source, summary.to_dict())
    return rows, summary
