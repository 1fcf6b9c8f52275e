"""benchmarks/one_shot.py: the prompt variant it evaluates (the evals themselves are the benchmark)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_one_shot_cuts_only_the_worked_example(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from masksearch.data.prompts import ramp_messages

    spec = importlib.util.spec_from_file_location("one_shot", ROOT / "benchmarks" / "one_shot.py")
    one_shot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(one_shot)
    rows = [{"prompt": ramp_messages("[mask] is a city.", 1), "id": 0},
            {"prompt": ramp_messages("[mask] is a river.", 1, one_shot=False), "id": 1}]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "val.parquet")
    assert one_shot.without_example(tmp_path / "val.parquet", tmp_path / "out.parquet") == 1
    out = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [r["prompt"] for r in out] == [
        ramp_messages("[mask] is a city.", 1, one_shot=False),
        rows[1]["prompt"],
    ]
    assert one_shot._by_row({"val:7:abc": 1.0}) == {"7": 1.0}
