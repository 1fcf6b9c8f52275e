"""Kept trajectories -> verl multi-turn SFT parquet (``messages`` column).

Each row's ``messages`` is the RL prompt (system, user) followed by the response as alternating
``assistant`` (the model's turns) and ``tool`` (the env's ``<information>`` observations)
messages. The recipe's dataset class (:class:`masksearch.recipes.sft_ramp.dataset.TrajectorySFTDataset`)
lays them out as the env does and trains on the ``assistant`` tokens only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from masksearch.core.atomic import atomic_path
from masksearch.sft.synthesize import read_records

__all__ = ["SFT_SCHEMA", "records_to_rows", "write_sft_parquet"]

_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
SFT_SCHEMA = pa.schema(
    [
        ("messages", pa.list_(_MESSAGE)),
        ("data_source", pa.string()),
        ("id", pa.string()),
        ("num_searches", pa.int64()),
        ("teacher", pa.string()),
    ]
)


def records_to_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One SFT row per kept record (others are skipped); duplicate ids keep the first."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise ValueError(f"record #{number} is not a JSON object ({type(record).__name__})")
        if record.get("status") != "kept" or not record.get("segments") or record.get("id") in seen:
            continue
        try:
            prompt = [{"role": str(m["role"]), "content": str(m["content"])} for m in record["prompt"]]
            response = [{"role": str(m["role"]), "content": str(m["content"])} for m in record["segments"]]
            row = {
                "messages": prompt + response,
                "data_source": str(record.get("data_source") or ""),
                "id": str(record["id"]),
                "num_searches": int(record.get("num_searches") or 0),
                "teacher": str((record.get("teacher") or {}).get("model") or ""),
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(
                f"kept record #{number} (id {record.get('id')!r}) is malformed: "
                f"{type(exc).__name__} {exc}; it needs id, prompt and segments of {{role, content}}"
            ) from None
        seen.add(row["id"])
        rows.append(row)
    return rows


def write_sft_parquet(kept_files: Sequence[str | os.PathLike], out: str | os.PathLike) -> tuple[Path, int]:
    """Convert one or more ``kept.jsonl`` files (or synthesis folders) into one parquet.

    Returns:
        ``(path, number of rows)``.

    Raises:
        ValueError: no kept trajectory in the inputs.
    """
    records: list[dict[str, Any]] = []
    for item in kept_files:
        path = Path(item)
        if path.is_dir():
            path = path / "kept.jsonl"
        records.extend(read_records(path))
    rows = records_to_rows(records)
    if not rows:
        raise ValueError(f"no kept trajectory in {[str(p) for p in kept_files]}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=SFT_SCHEMA), tmp)
    return out, len(rows)
