"""``masksearch qa prepare`` reads RL-schema parquet (its own output, Search-R1's); an empty result is an error."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from masksearch.cli.main import main

QA = [{"question": "Who wrote Tosca?", "golden_answers": ["Giacomo Puccini", "Puccini"]},
      {"question": "Capital of France?", "answer": "Paris"}]  # fmt: skip


def _rows(path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_own_output_reads_back(tmp_path, capsys):
    src = tmp_path / "qa.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in QA))
    first, second = tmp_path / "first.parquet", tmp_path / "second.parquet"
    assert main(["qa", "prepare", "--input", str(src), "--out", str(first)]) == 0
    assert main(["qa", "prepare", "--input", str(first), "--out", str(second)]) == 0  # lost every row before
    a, b = _rows(first), _rows(second)
    assert len(b) == 2
    assert [r["extra_info"]["question"] for r in b] == [r["extra_info"]["question"] for r in a]
    assert [r["reward_model"]["ground_truth"] for r in b] == [["Giacomo Puccini", "Puccini"], ["Paris"]]


def test_search_r1_parquet(tmp_path):
    # Search-R1's data_process scripts: the question only inside the prompt, answers as {"target": [...]}
    rows = [
        {
            "data_source": "nq",
            "prompt": [
                {"role": "user", "content": "Answer the given question. ... Question: who wrote tosca?\n"}
            ],
            "ability": "fact-reasoning",
            "reward_model": {"style": "rule", "ground_truth": {"target": ["Puccini"]}},
            "extra_info": {"split": "train", "index": 0},
        }
    ]
    src = tmp_path / "nq_train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)
    out = tmp_path / "out.parquet"
    assert main(["qa", "prepare", "--input", str(src), "--out", str(out)]) == 0
    (row,) = _rows(out)
    assert row["extra_info"]["question"] == "who wrote tosca?" and row["reward_model"]["ground_truth"] == [
        "Puccini"
    ]


def test_empty_result_is_an_error(tmp_path, capsys):
    src = tmp_path / "junk.jsonl"
    src.write_text(json.dumps({"text": "no question here"}) + "\n")
    out = tmp_path / "out.parquet"
    assert main(["qa", "prepare", "--input", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no usable question/answer rows" in err and "no_question=1" in err
    assert not out.exists()
