"""``run_eval`` through the real env loop and a real BM25 index, with a scripted oracle generator:
scores, output files, resuming, failures that do not stop the run, and bad rows."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from masksearch.env.config import SearchEnvConfig
from masksearch.env.retrieval import clear_search_client_cache, get_search_client
from masksearch.eval.datasets import load_eval_dataset
from masksearch.eval.runner import (
    EXIT_FAILURES,
    RESULTS_FILE,
    RESULTS_MD,
    TRAJECTORIES_FILE,
    EvalResumeError,
    EvalSettings,
    read_records,
    run_eval,
)

N_QUESTIONS = 10
SETTINGS = EvalSettings(batch_size=4, max_response_tokens=512, show_progress=False)


@pytest.fixture(scope="module")
def env(qa_index):
    clear_search_client_cache()
    config = SearchEnvConfig(retriever_index=str(qa_index), max_turns=3, topk=2)
    return config, get_search_client(config)


@pytest.fixture(scope="module")
def dataset(qa_parquet):
    return load_eval_dataset(qa_parquet)


def _run(gen, tok, dataset, env, out, settings=SETTINGS, **kw):
    config, client = env
    return run_eval(
        gen, tok, [dataset], client, config, out, settings=settings, run_info={"model": "oracle"}, **kw
    )


def _lines(out):
    return [json.loads(x) for x in (out / TRAJECTORIES_FILE).read_text().splitlines() if x.strip()]


class TestOracle:
    def test_oracle_scores_one_through_real_index(self, oracle, embedded_tokenizer, dataset, env, tmp_path):
        gen = oracle()
        report = _run(gen, embedded_tokenizer, dataset, env, tmp_path)
        res = json.loads((tmp_path / RESULTS_FILE).read_text())
        overall = res["overall"]
        assert (overall["n"], overall["em"], overall["f1"], overall["recall"]) == (N_QUESTIONS, 1.0, 1.0, 1.0)
        assert (
            overall["format_ok"] == 1.0 and overall["mean_searches"] == 1.0 and overall["mean_turns"] == 2.0
        )
        assert (
            overall["skipped"] == 1 and res["per_data_source"]["toyqa"]["skipped"] == 1
        )  # the no-answer row
        assert report.exit_code == 0 and report.failures == 0 and gen.calls == 2 * N_QUESTIONS
        lines = _lines(tmp_path)
        assert len(lines) == N_QUESTIONS and len({r["id"] for r in lines}) == N_QUESTIONS
        for r in lines:  # every sample keeps its full trajectory; the observation came from BM25
            turns = r["trajectory"]["turns"]
            assert r["error"] is None and r["scores"]["em"] == 1.0 and r["answer"] == r["golds"][0]
            assert turns[0]["query"] == r["question"] and r["golds"][0] in turns[0]["observation"]
        table = (tmp_path / RESULTS_MD).read_text()
        assert "| toyqa | 10 | 100.00 | 100.00 | 100.00 |" in table and "**overall**" in table

    def test_raw_jsonl_input_counts_the_skip_reason(
        self, oracle, embedded_tokenizer, qa_jsonl, env, tmp_path
    ):
        ds = load_eval_dataset(qa_jsonl)
        report = _run(oracle(), embedded_tokenizer, ds, env, tmp_path)
        assert report.skipped == 1 and report.skip_reasons == {"no_answer": 1}
        assert report.results["per_data_source"]["toyqa"]["em"] == 1.0


class TestResume:
    def test_max_samples_then_full_does_not_regenerate(
        self, oracle, embedded_tokenizer, dataset, env, tmp_path
    ):
        first = oracle()
        _run(
            first, embedded_tokenizer, dataset, env, tmp_path, replace(SETTINGS, batch_size=3, max_samples=4)
        )
        assert first.calls == 2 * 4 and len(_lines(tmp_path)) == 4
        second = oracle()
        report = _run(second, embedded_tokenizer, dataset, env, tmp_path)
        assert second.calls == 2 * (N_QUESTIONS - 4), "finished samples must not be generated again"
        assert (report.n_new, report.n_resumed, report.n_samples) == (6, 4, N_QUESTIONS)
        assert report.results["overall"]["n"] == N_QUESTIONS and report.results["overall"]["em"] == 1.0
        ids = [r["id"] for r in _lines(tmp_path)]
        assert len(ids) == len(set(ids)) == N_QUESTIONS
        third = oracle()  # nothing left: no generation at all, same results
        assert (
            _run(third, embedded_tokenizer, dataset, env, tmp_path).results["overall"]
            == report.results["overall"]
        )
        assert third.calls == 0

    def test_interrupted_run_resumes_after_the_last_written_batch(
        self, oracle, embedded_tokenizer, dataset, env, tmp_path
    ):
        # Batches of 3 cost 6 calls each; stop in the middle of the third batch.
        settings = replace(SETTINGS, batch_size=3)
        dying = oracle(interrupt_after=15)
        with pytest.raises(oracle.Interrupted):
            _run(dying, embedded_tokenizer, dataset, env, tmp_path, settings)
        assert len(_lines(tmp_path)) == 6, "the two finished batches are on disk"
        resumed = oracle()
        report = _run(resumed, embedded_tokenizer, dataset, env, tmp_path, settings)
        assert resumed.calls == 2 * (N_QUESTIONS - 6) and report.n_resumed == 6
        assert report.results["overall"]["n"] == N_QUESTIONS and report.results["overall"]["em"] == 1.0

    def test_other_settings_are_refused(self, oracle, embedded_tokenizer, dataset, env, tmp_path):
        _run(oracle(), embedded_tokenizer, dataset, env, tmp_path, replace(SETTINGS, max_samples=1))
        config, client = env
        other = SearchEnvConfig(retriever_index=config.retriever_index, max_turns=1, topk=2)
        with pytest.raises(EvalResumeError, match="max_turns"):
            run_eval(
                oracle(),
                embedded_tokenizer,
                [dataset],
                client,
                other,
                tmp_path,
                settings=SETTINGS,
                run_info={"model": "oracle"},
            )


class TestFailures:
    def test_generator_failure_is_recorded_and_retried(
        self, oracle, embedded_tokenizer, dataset, env, tmp_path
    ):
        bad = dataset.samples[2].question
        report = _run(oracle(fail_on=[bad]), embedded_tokenizer, dataset, env, tmp_path)
        assert report.failures == 1 and report.exit_code == EXIT_FAILURES
        rec = next(r for r in _lines(tmp_path) if r["question"] == bad)
        assert rec["error"].startswith("generation: GenerationError") and rec["trajectory"] is None
        assert rec["scores"]["em"] == 0.0 and rec["scores"]["format_ok"] == 0.0
        overall = report.results["overall"]
        assert (
            overall["n"] == N_QUESTIONS and overall["em"] == pytest.approx(0.9) and overall["failures"] == 1
        )
        healthy = oracle()  # a re-run retries only the failed sample
        again = _run(healthy, embedded_tokenizer, dataset, env, tmp_path)
        assert healthy.calls == 2 and again.failures == 0 and again.exit_code == 0
        assert (
            again.results["overall"]["em"] == 1.0
            and read_records(tmp_path / TRAJECTORIES_FILE)[rec["id"]]["error"] is None
        )

    def test_retriever_failure_is_recorded(self, oracle, embedded_tokenizer, dataset, env, tmp_path):
        from masksearch.search_tool.client import SearchOutcome

        config, client = env
        bad = dataset.samples[0].question

        class FlakyClient:
            def search(self, queries, topk=None):
                good = client.search(queries, topk)
                return [
                    SearchOutcome([], "HTTP 503", 0.1) if q == bad else o
                    for q, o in zip(queries, good, strict=True)
                ]

        report = run_eval(
            oracle(), embedded_tokenizer, [dataset], FlakyClient(), config, tmp_path, settings=SETTINGS
        )
        rec = next(r for r in _lines(tmp_path) if r["question"] == bad)
        assert rec["error"].startswith("retrieval:") and "HTTP 503" in rec["error"]
        assert rec["trajectory"] is not None and rec["scores"]["em"] == 0.0  # the oracle saw no evidence
        assert report.failures == 1 and report.exit_code == EXIT_FAILURES
        assert report.results["overall"]["retrieval_errors"] == 1

    def test_unclosed_answer_scores_zero_and_keeps_the_trajectory(
        self, embedded_tokenizer, dataset, env, tmp_path
    ):
        from masksearch.env.generators import GenerationResult

        class Rambler:
            token_in = False
            calls = 0

            def generate(self, prompt, max_new_tokens, stop, *, messages=None):
                self.calls += 1
                return GenerationResult("<think>easy</think>\n<answer>Marrowgate", finish_reason="eos")

        report = _run(Rambler(), embedded_tokenizer, dataset, env, tmp_path)
        rec = _lines(tmp_path)[0]
        assert rec["scores"]["recall"] == 0.0 and rec["scores"]["format_ok"] == 0.0
        assert rec["trajectory"]["response_text"].endswith("<answer>Marrowgate") and rec["error"] is None
        assert report.results["overall"]["recall"] == 0.0 and report.exit_code == 0
