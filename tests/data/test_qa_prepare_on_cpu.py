"""QA preparation (masksearch.data.qa and ``masksearch qa prepare``) on three small formats."""

from __future__ import annotations

import argparse
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from masksearch.core.errors import UserFacingError
from masksearch.data.qa import answer_aliases, default_data_source, prepare_qa, read_qa_records
from masksearch.data.qa_cli import register as register_qa
from masksearch.data.schema import ROW_SCHEMA

SEARCH_R1 = [
    {"id": "1", "question": "who wrote hamlet?", "golden_answers": ["William Shakespeare", "Shakespeare"]},
    {"id": "2", "question": "capital of norway?", "golden_answers": []},  # no answer: skipped
]
HOTPOT = [
    {"_id": "a", "question": "Which city hosted the 1992 Olympics?", "answer": "Barcelona", "type": "bridge"},
    {"_id": "b", "question": "  ", "answer": "x"},  # no question: skipped
]
GENERIC = [
    {"question": "Largest planet?", "answers": ["Jupiter", "jupiter", " Jupiter "]},
    {"question": "SQuAD style?", "answers": {"text": ["yes"], "answer_start": [0]}},
    {"question": "Year?", "answers": [1889]},
    {"question": "Nothing?", "answers": None},  # skipped
]


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register_qa(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.handler(args)


class TestAnswers:
    @pytest.mark.parametrize(
        ("record", "expected"),
        [
            ({"golden_answers": ["A", "B", "A"]}, ["A", "B"]),  # de-duplicated, order kept
            ({"answer": " A "}, ["A"]),  # stripped
            ({"answers": {"text": ["x", "y"]}}, ["x", "y"]),  # SQuAD dict
            ({"answers": [1889, True]}, ["1889"]),  # numbers become text, booleans are dropped
            ({"answers": []}, []),
            ({}, []),
        ],
    )
    def test_aliases(self, record, expected):
        assert answer_aliases(record) == expected

    @pytest.mark.parametrize(
        ("path", "expected"),
        [("hotpotqa_train.jsonl", "hotpotqa"), ("/x/nq-dev.parquet", "nq"), ("Bamboogle.json", "bamboogle")],
    )
    def test_default_data_source(self, path, expected):
        assert default_data_source(path) == expected


class TestPrepare:
    def test_rows_and_counts(self):
        rows, summary = prepare_qa(SEARCH_R1 + HOTPOT + GENERIC, data_source="mix", split="test")
        assert summary.to_dict() == {"read": 8, "written": 5, "skipped": {"no_question": 1, "no_answer": 2}}
        row = rows[0]
        assert (
            row["data_source"] == "mix" and row["ability"] == "qa" and row["agent_name"] == "masksearch_agent"
        )
        assert row["reward_model"] == {
            "style": "rule",
            "ground_truth": ["William Shakespeare", "Shakespeare"],
        }
        info = row["extra_info"]
        assert (info["mask_num"], info["question"], info["split"], info["index"]) == (
            0,
            "who wrote hamlet?",
            "test",
            0,
        )
        assert [r["extra_info"]["index"] for r in rows] == list(range(5))
        assert row["prompt"][1]["content"] == "Question: who wrote hamlet?"
        assert "<search>" in row["prompt"][0]["content"]

    @pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet"])
    def test_cli_on_three_formats(self, tmp_path, capsys, fmt):
        records = {"jsonl": SEARCH_R1, "json": HOTPOT, "parquet": GENERIC[:1] + GENERIC[3:]}[fmt]
        src = tmp_path / f"myset_train.{fmt}"
        if fmt == "jsonl":
            src.write_text("".join(json.dumps(r) + "\n" for r in records))
        elif fmt == "json":
            src.write_text(json.dumps({"data": records}))
        else:
            pq.write_table(pa.Table.from_pylist(records), src)
        out = tmp_path / "out.parquet"
        assert _run_cli(["qa", "prepare", "--input", str(src), "--out", str(out), "--no-one-shot"]) == 0
        assert "wrote 1 rows" in capsys.readouterr().out
        table = pq.read_table(out)
        assert table.schema.equals(ROW_SCHEMA)
        row = table.to_pylist()[0]
        assert row["data_source"] == "myset" and row["extra_info"]["mask_num"] == 0
        assert "Example" not in row["prompt"][0]["content"]

    def test_cli_errors(self, tmp_path):
        with pytest.raises(UserFacingError, match="input not found"):
            _run_cli(
                ["qa", "prepare", "--input", str(tmp_path / "no.jsonl"), "--out", str(tmp_path / "o.parquet")]
            )
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"question": "q", "answer": "a"}\nnot json\n')
        with pytest.raises(UserFacingError, match=r"bad.jsonl:2: not JSON"):
            _run_cli(["qa", "prepare", "--input", str(bad), "--out", str(tmp_path / "o.parquet")])
        with pytest.raises(ValueError, match="unsupported"):
            list(read_qa_records(tmp_path / "x.csv"))

    @pytest.mark.parametrize(
        ("out", "match"),
        [
            ("afile/x.parquet", "afile is a file, not a folder"),  # under a file (was FileExistsError)
            ("adir.parquet", "is a folder; give a file path"),  # an existing folder (was IsADirectoryError)
            ("x.jsonl", "must end with .parquet"),  # not parquet
        ],
    )
    def test_cli_bad_out_is_one_line(self, tmp_path, monkeypatch, capsys, out, match):
        """Issue 21: through the real ``masksearch`` dispatcher, a bad --out is one line and exit 2."""
        from masksearch.cli import main as cli_main

        monkeypatch.setattr(cli_main, "COMMAND_MODULES", ["masksearch.data.qa_cli"])
        (tmp_path / "afile").write_text("x")
        (tmp_path / "adir.parquet").mkdir()
        src = tmp_path / "nq_train.jsonl"
        src.write_text("".join(json.dumps(r) + "\n" for r in SEARCH_R1))
        assert cli_main.main(["qa", "prepare", "--input", str(src), "--out", str(tmp_path / out)]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert err.startswith("masksearch qa: error: ") and match in err
