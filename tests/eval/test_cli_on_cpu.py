"""``masksearch eval`` end to end: the tiny HF model on CPU, failures and exit codes, one-line
errors for bad input, and ``--compare`` with its plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from masksearch.cli.main import main
from masksearch.eval.runner import EXIT_FAILURES, RESULTS_FILE, RESULTS_MD, TRAJECTORIES_FILE

N_QUESTIONS = 10


def _eval_args(model, data, index, out, *extra):
    return ["eval", "--model", str(model), "--data", str(data), "--index", str(index), "--out", str(out),
            "--no-progress", *extra]  # fmt: skip


def _lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / TRAJECTORIES_FILE).read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def tiny_run(tiny_model_path, qa_parquet, qa_index, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-run")
    rc = main(_eval_args(tiny_model_path, qa_parquet, qa_index, out, "--max-response-tokens", "24",
                         "--max-turns", "2", "--batch-size", "5", "--device", "cpu"))  # fmt: skip
    return rc, out


class TestTinyModel:
    def test_numbers_in_range_and_every_sample_kept(self, tiny_run):
        rc, out = tiny_run
        assert rc == 0
        res = json.loads((out / RESULTS_FILE).read_text())
        assert res["metrics"] == ["em", "f1", "recall"]
        for group in [res["overall"], *res["per_data_source"].values()]:
            for key in ("em", "f1", "recall", "format_ok"):
                assert 0.0 <= group[key] <= 1.0
        assert res["overall"]["n"] == N_QUESTIONS and res["overall"]["skipped"] == 1
        assert res["run"]["backend"] == "hf" and res["run"]["env"]["max_turns"] == 2
        lines = _lines(out)
        assert len(lines) == N_QUESTIONS and all(r["trajectory"]["turns"] for r in lines)
        assert "| toyqa | 10 |" in (out / RESULTS_MD).read_text()

    def test_rerun_resumes_without_generating(self, tiny_run, tiny_model_path, qa_parquet, qa_index, capsys):
        _, out = tiny_run
        rc = main(_eval_args(tiny_model_path, qa_parquet, qa_index, out, "--max-response-tokens", "24",
                             "--max-turns", "2", "--batch-size", "5", "--device", "cpu"))  # fmt: skip
        assert rc == 0 and "(0 new, 10 resumed)" in capsys.readouterr().out
        assert len(_lines(out)) == N_QUESTIONS


class TestFailures:
    def test_failing_sample_gives_exit_code_three(
        self, monkeypatch, oracle, embedded_tokenizer, qa_parquet, qa_index, tmp_path, capsys
    ):
        import masksearch.eval.cli as eval_cli

        bad = "Who founded Halvorsen Shipping?"
        monkeypatch.setattr(
            eval_cli, "make_generator", lambda args: (oracle(fail_on=[bad]), embedded_tokenizer, "oracle")
        )
        rc = main(_eval_args("oracle", qa_parquet, qa_index, tmp_path))
        printed = capsys.readouterr().out
        assert rc == EXIT_FAILURES and "failures: 1" in printed and "1 sample(s) failed" in printed
        res = json.loads((tmp_path / RESULTS_FILE).read_text())
        assert res["overall"]["failures"] == 1 and res["overall"]["n"] == N_QUESTIONS
        assert res["overall"]["em"] == pytest.approx(0.9)


class TestBadInput:
    @pytest.mark.parametrize(
        "case",
        [
            "missing_data",  # --data names a file that does not exist
            "missing_model",  # --model is a path that does not exist
            "not_a_model",  # --model is a folder with neither config.json nor verl shards
            "missing_index",  # --index folder does not exist
            "no_out",  # required option left out
            "unknown_builtin",  # a name that looks built-in but is not
        ],
    )
    def test_one_line_error(self, case, tiny_model_path, qa_parquet, qa_index, tmp_path, capsys):
        args = {
            "missing_data": _eval_args(tiny_model_path, tmp_path / "nope.parquet", qa_index, tmp_path / "o"),
            "missing_model": _eval_args(tmp_path / "no-model", qa_parquet, qa_index, tmp_path / "o"),
            "not_a_model": _eval_args(tmp_path, qa_parquet, qa_index, tmp_path / "o"),
            "missing_index": _eval_args(tiny_model_path, qa_parquet, tmp_path / "no-index", tmp_path / "o"),
            "no_out": [
                "eval",
                "--model",
                str(tiny_model_path),
                "--data",
                str(qa_parquet),
                "--index",
                str(qa_index),
            ],
            "unknown_builtin": _eval_args(tiny_model_path, "fanoutqa:train", qa_index, tmp_path / "o"),
        }[case]
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("masksearch eval: error:") and len(err.splitlines()) == 1, err


class TestCompare:
    def test_table_and_plot(
        self, tiny_run, monkeypatch, oracle, embedded_tokenizer, qa_parquet, qa_index, tmp_path, capsys
    ):
        import masksearch.eval.cli as eval_cli

        _, tiny_out = tiny_run
        oracle_out = tmp_path / "oracle"
        monkeypatch.setattr(eval_cli, "make_generator", lambda args: (oracle(), embedded_tokenizer, "oracle"))
        assert main(_eval_args("oracle", qa_parquet, qa_index, oracle_out)) == 0
        capsys.readouterr()
        png = tmp_path / "cmp" / "recall.png"
        assert main(["eval", "--compare", str(tiny_out), str(oracle_out), "--plot", str(png)]) == 0
        printed = capsys.readouterr().out
        assert "| Recall % |" in printed and "| toyqa |" in printed and "| **avg** |" in printed
        assert "100.00" in printed.split("| toyqa |")[1].splitlines()[0]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000

    def test_unknown_metric_and_missing_run(self, tiny_run, tmp_path, capsys):
        _, tiny_out = tiny_run
        assert main(["eval", "--compare", str(tiny_out), "--metric", "judge"]) == 2
        assert main(["eval", "--compare", str(tmp_path / "nothing")]) == 2
        assert "no results.json" in capsys.readouterr().err
