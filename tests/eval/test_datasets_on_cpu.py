"""Evaluation data: RL parquet rows, raw QA files, Search-R1 parquet, FanOutQA dev (built in)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from masksearch.eval.datasets import fanoutqa_answer_text, is_builtin_qa_source, load_eval_dataset


class TestFanOutQAAnswers:
    @pytest.mark.parametrize(
        ("answer", "text"),
        [
            ("Right", "Right"),  # plain string
            (12, "12"),  # number
            (True, "yes"),  # boolean, as FanOutQA's str_answer
            (["Patty Murray", "Ron Wyden"], "Patty Murray; Ron Wyden"),  # list of entities
            ({"Pat Burrell": "Right", "JD Drew": "Left"}, "Pat Burrell - Right; JD Drew - Left"),  # dict
            ({"a": ["x", "y"]}, "a - x; y"),  # nested
            (None, ""),  # missing
            ({}, ""),  # empty dict
        ],
    )
    def test_flatten(self, answer, text):
        assert fanoutqa_answer_text(answer) == text


needs_fanoutqa = pytest.mark.skipif(
    importlib.util.find_spec("fanoutqa") is None,
    reason="pip install --no-deps fanoutqa==1.1.1 (make install)",
)


@needs_fanoutqa
class TestFanOutQADev:
    def test_loads_from_the_package(self):
        ds = load_eval_dataset("fanoutqa:dev")
        assert ds.name == "fanoutqa_dev" and len(ds.samples) == 310 and not ds.skipped
        sample = ds.samples[0]
        assert (
            sample.data_source == "fanoutqa"
            and sample.golds
            and all(isinstance(g, str) for g in sample.golds)
        )
        assert sample.question in sample.messages[-1]["content"]

    def test_qa_prepare_accepts_the_builtin_name(self, tmp_path, capsys):
        import pyarrow.parquet as pq

        from masksearch.cli.main import main

        out = tmp_path / "fanoutqa_dev.parquet"
        assert main(["qa", "prepare", "--input", "fanoutqa:dev", "--out", str(out)]) == 0
        rows = pq.read_table(out).to_pylist()
        assert len(rows) == 310 and {r["data_source"] for r in rows} == {"fanoutqa"}
        assert "wrote 310 rows" in capsys.readouterr().out

    def test_builtin_names(self):
        assert is_builtin_qa_source("fanoutqa:dev") and not is_builtin_qa_source("hotpot_dev.jsonl")
        with pytest.raises(ValueError, match="no public answers"):
            load_eval_dataset("fanoutqa:test")


class TestFiles:
    def test_parquet_skips_the_row_without_answers(self, qa_parquet):
        ds = load_eval_dataset(qa_parquet)
        assert len(ds.samples) == 10 and ds.skipped == {"toyqa": 1} and ds.skip_reasons == {"no_answer": 1}
        assert len({s.id for s in ds.samples}) == 10
        assert [s.id for s in load_eval_dataset(qa_parquet).samples] == [s.id for s in ds.samples]  # stable

    def test_edited_row_gets_a_new_id(self, tmp_path):
        path = tmp_path / "q.jsonl"
        path.write_text(json.dumps({"question": "Q?", "answer": "A"}) + "\n")
        first = load_eval_dataset(path).samples[0].id
        path.write_text(json.dumps({"question": "Q?", "answer": "B"}) + "\n")
        assert load_eval_dataset(path).samples[0].id != first

    def test_search_r1_parquet(self, tmp_path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [
            {"data_source": "nq", "prompt": [{"role": "user", "content": "Question: who?"}],
             "reward_model": {"style": "rule", "ground_truth": {"target": ["Ann", "Anne"]}}, "extra_info": {"index": 0}},
            {"data_source": "nq", "prompt": [{"role": "user", "content": "Question: what?"}],
             "reward_model": {"style": "rule", "ground_truth": {"target": []}}, "extra_info": {"index": 1}},
        ]  # fmt: skip
        path = tmp_path / "nq_test.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
        ds = load_eval_dataset(path)
        assert [s.golds for s in ds.samples] == [["Ann", "Anne"]] and ds.skipped == {"nq": 1}

    @pytest.mark.parametrize(
        ("name", "content", "error"),
        [
            ("missing.parquet", None, FileNotFoundError),  # no such file
            ("bad.parquet", b"not parquet", ValueError),  # unreadable parquet
            ("bad.jsonl", b"{not json\n", ValueError),  # unreadable JSONL
            ("data.csv", b"a,b\n", ValueError),  # unsupported type
        ],
    )
    def test_bad_files(self, tmp_path, name, content, error):
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(error):
            load_eval_dataset(path)
