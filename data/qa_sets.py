"""Built-in QA sets, read like a QA file: ``fanoutqa:dev`` (the dev split shipped in the ``fanoutqa`` wheel).

``masksearch qa prepare --input fanoutqa:dev`` and ``masksearch eval --data fanoutqa:dev`` both
read them through :func:`builtin_qa_records`.

FanOutQA answers are strings, numbers, booleans, lists or dicts (``{entity: value}``). They are
flattened the way FanOutQA's own string metrics do (``fanoutqa.eval.utils.str_answer``): a dict
becomes ``"k1 - v1; k2 - v2"``, a list ``"a; b"``, a boolean ``yes``/``no``, and the result is
ONE gold alias, so token recall measures how much of the whole answer the prediction covers
(close to FanOutQA's "loose accuracy"); EM on these multi-part answers is rarely 1.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "BUILTIN_SETS",
    "builtin_qa_records",
    "fanoutqa_answer_text",
    "fanoutqa_records",
    "is_builtin_qa_source",
]

#: Built-in QA sets: name -> data_source.
BUILTIN_SETS: dict[str, str] = {"fanoutqa:dev": "fanoutqa"}

_FANOUTQA_FILES = {"dev": "fanout-final-dev.json"}


# --------------------------------------------------------------------------- FanOutQA
def fanoutqa_answer_text(answer: Any) -> str:
    """One string for a FanOutQA answer (``str_answer``'s layout, ``; `` between parts).

    >>> fanoutqa_answer_text({"Pat Burrell": "Right", "JD Drew": "Left"})
    'Pat Burrell - Right; JD Drew - Left'
    >>> fanoutqa_answer_text(["a", 3]), fanoutqa_answer_text(True), fanoutqa_answer_text(None)
    ('a; 3', 'yes', '')
    """
    if isinstance(answer, bool):
        return "yes" if answer else "no"
    if answer is None:
        return ""
    if isinstance(answer, Mapping):
        parts = [f"{k} - {fanoutqa_answer_text(v)}".strip(" -") for k, v in answer.items()]
        return "; ".join(p for p in parts if p)
    if isinstance(answer, list | tuple):
        return "; ".join(t for t in (fanoutqa_answer_text(a) for a in answer) if t)
    return str(answer).strip()


def _fanoutqa_file(split: str) -> Path:
    if split not in _FANOUTQA_FILES:
        raise ValueError(f"FanOutQA split {split!r} has no public answers; use: {sorted(_FANOUTQA_FILES)}")
    spec = importlib.util.find_spec("fanoutqa")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("FanOutQA needs the 'fanoutqa' package: pip install --no-deps fanoutqa==1.1.1")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / _FANOUTQA_FILES[split]
    if not path.is_file():
        raise ValueError(f"the installed fanoutqa package has no {path.name}")
    return path


def fanoutqa_records(split: str = "dev") -> list[dict[str, Any]]:
    """FanOutQA questions as QA records: ``{"id", "question", "golden_answers": [one alias]}``.

    Reads the JSON file shipped in the ``fanoutqa`` wheel directly (its eval code needs spaCy).
    """
    data = json.loads(_fanoutqa_file(split).read_text(encoding="utf-8"))
    records = []
    for item in data:
        text = fanoutqa_answer_text(item.get("answer"))
        records.append(
            {"id": item.get("id"), "question": item.get("question"), "golden_answers": [text] if text else []}
        )
    return records


def is_builtin_qa_source(spec: Any) -> bool:
    """Whether ``spec`` names a built-in QA set (``fanoutqa:dev``) rather than a file.

    >>> is_builtin_qa_source("fanoutqa:dev"), is_builtin_qa_source("data/hotpot.jsonl")
    (True, False)
    """
    text = str(spec).strip().lower()
    return text in BUILTIN_SETS or (text.startswith("fanoutqa:") and not Path(str(spec)).exists())


def builtin_qa_records(spec: str) -> Iterator[dict[str, Any]]:
    """Records of a built-in set (``masksearch qa prepare --input fanoutqa:dev`` uses this).

    Raises:
        ValueError: unknown name, or the package that ships it is missing.
    """
    name = str(spec).strip().lower()
    if name.startswith("fanoutqa:"):
        yield from fanoutqa_records(name.split(":", 1)[1])
        return
    raise ValueError(f"unknown built-in QA set {spec!r}; known: {sorted(BUILTIN_SETS)}")
