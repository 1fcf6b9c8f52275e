"""One parquet schema for every RL row masksearch writes (RAMP and QA alike).

verl concatenates all ``data.train_files`` with ``datasets.concatenate_datasets``, which fails when
the files' column types differ. RAMP and QA rows therefore share one explicit Arrow schema: fields
that a kind of row does not use are written empty (``question=""`` for RAMP, ``span_offsets=[]``
for QA), so a RAMP file and a QA file can be mixed in one run, and the curriculum sampler reads
``extra_info.mask_num`` from both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from masksearch.core.atomic import atomic_path

EXTRA_INFO_TYPE = pa.struct(
    [
        ("mask_num", pa.int64()),
        ("index", pa.int64()),
        ("split", pa.string()),
        ("passage_id", pa.string()),
        ("title", pa.string()),
        ("span_offsets", pa.list_(pa.list_(pa.int64()))),
        ("masked_text", pa.string()),
        ("question", pa.string()),
    ]
)

ROW_SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.list_(pa.string()))])),
        ("extra_info", EXTRA_INFO_TYPE),
        ("agent_name", pa.string()),
    ]
)

_EXTRA_DEFAULTS: dict[str, Any] = {
    "passage_id": "",
    "title": "",
    "span_offsets": [],
    "masked_text": "",
    "question": "",
}


def make_row(
    *,
    data_source: str,
    prompt: Sequence[Mapping[str, str]],
    ability: str,
    ground_truth: Sequence[str],
    extra_info: Mapping[str, Any],
    agent_name: str,
) -> dict[str, Any]:
    """A row dict in verl's RL format, with ``extra_info`` completed to the shared schema."""
    extra = {**_EXTRA_DEFAULTS, **extra_info}
    unknown = set(extra) - set(EXTRA_INFO_TYPE.names)
    if unknown:
        raise ValueError(f"extra_info keys not in the schema: {sorted(unknown)}")
    return {
        "data_source": data_source,
        "prompt": [dict(m) for m in prompt],
        "ability": ability,
        "reward_model": {"style": "rule", "ground_truth": list(ground_truth)},
        "extra_info": extra,
        "agent_name": agent_name,
    }


def write_rows(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write rows to ``path`` as parquet with ``ROW_SCHEMA`` (an empty file still has the schema)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(list(rows), schema=ROW_SCHEMA)
    with atomic_path(path) as tmp:  # a crash leaves the old file or none, never a torn one
        pq.write_table(table, tmp)
    return path
