"""SearchSession (the turn logic shared by the verl loop and the standalone runner), config, metrics."""

from __future__ import annotations

import pickle

import pytest
from omegaconf import OmegaConf

from masksearch.env.config import SearchEnvConfig
from masksearch.env.metrics import METRIC_NAMES, env_batch_metrics
from masksearch.env.prompts import apply_system_prompt, build_messages
from masksearch.env.retrieval import asearch_one, search_many
from masksearch.env.session import (
    OBS_PREFIX,
    OBS_SUFFIX,
    STATS_KEYS,
    AgentState,
    SearchSession,
    StopReason,
)


def enc(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


class TestSearchSession:
    def make(self, tokenizer, budget=256, **cfg):
        return SearchSession(
            tokenizer, SearchEnvConfig(**cfg), response_budget=budget, formatter=lambda hits: "DOCS"
        )

    def test_states_and_masks(self, tokenizer):
        s = self.make(tokenizer)
        assert s.state is AgentState.GENERATING and s.next_request().max_tokens == 256
        ids = enc(tokenizer, "<think>a</think><search>q</search>")
        assert s.add_generation(ids, [-0.5] * len(ids)) is AgentState.SEARCHING and s.pending_query == "q"
        assert s.add_search_result(["hit"], None, 0.3) is AgentState.GENERATING
        obs = enc(tokenizer, OBS_PREFIX) + enc(tokenizer, "DOCS") + enc(tokenizer, OBS_SUFFIX)
        assert s.response_ids == ids + obs
        assert s.response_mask == [1] * len(ids) + [0] * len(obs)
        assert s.response_logprobs == [-0.5] * len(ids) + [0.0] * len(obs)
        ans = enc(tokenizer, "<answer>x</answer>")
        assert s.add_generation(ans, None) is AgentState.TERMINATED
        assert s.stop_reason is StopReason.ANSWERED and s.response_logprobs is None  # one turn had none
        assert s.stats()["retrieval_latency_s"] == pytest.approx(0.3)
        assert set(s.stats()) == set(STATS_KEYS)

    @pytest.mark.parametrize(
        "hits, error, body",
        [
            (["h"], None, "DOCS"),  # results, through the formatter
            ([], None, "No results found."),  # nothing matched
            ([], "search timed out after\n10s", "Search failed: search timed out after 10s"),  # one line
        ],
    )
    def test_observation_bodies(self, tokenizer, hits, error, body):
        s = self.make(tokenizer)
        s.add_generation(enc(tokenizer, "<search>q</search>"))
        s.add_search_result(hits, error, 0.0)
        assert s.turns[0].observation == f"{OBS_PREFIX}{body}{OBS_SUFFIX}"
        assert s.num_retrieval_errors == (1 if error else 0)

    @pytest.mark.parametrize(
        "error, cached, counted",
        [
            (None, True, 1),  # answered from the client's cache
            (None, False, 0),  # asked the retriever
            ("boom", True, 0),  # a failure is never a cache hit
        ],
    )
    def test_cache_hits_are_counted(self, tokenizer, error, cached, counted):
        s = self.make(tokenizer)
        s.add_generation(enc(tokenizer, "<search>q</search>"))
        s.add_search_result(["h"] if error is None else [], error, 0.0, cached)
        assert s.stats()["num_cached_searches"] == counted

    def test_steps_out_of_order_raise(self, tokenizer):
        s = self.make(tokenizer)
        with pytest.raises(RuntimeError, match="expected searching"):
            s.add_search_result([], None)

    def test_logprob_count_must_match(self, tokenizer):
        with pytest.raises(ValueError, match="log-probs"):
            self.make(tokenizer).add_generation([1, 2, 3], [0.0])

    def test_max_obs_tokens_too_small_for_the_wrapper(self, tokenizer):
        with pytest.raises(ValueError, match="max_obs_tokens"):
            self.make(tokenizer, max_obs_tokens=3)

    def test_text_generator_turn_marked_truncated(self, tokenizer):
        s = self.make(tokenizer)
        assert s.add_generation(enc(tokenizer, "<think>still going"), truncated=True) is AgentState.TERMINATED
        assert s.stop_reason is StopReason.LENGTH_BUDGET

    def test_multibyte_text_is_not_split_before_the_closing_tag(self, tokenizer):
        s = SearchSession(
            tokenizer, SearchEnvConfig(max_obs_tokens=14), 256, formatter=lambda h: "日本語のテキスト" * 10
        )
        s.add_generation(enc(tokenizer, "<search>q</search>"))
        s.add_search_result(["h"], None)
        obs = s.turns[0].observation
        assert "\ufffd" not in obs and obs.endswith(OBS_SUFFIX) and s.turns[0].observation_truncated


class TestSearchEnvConfig:
    def test_defaults_and_trainer_config(self):
        cfg = OmegaConf.create({"masksearch": {"env": {"max_turns": 6, "retriever_url": "http://x"}}})
        c = SearchEnvConfig.resolve(cfg, environ={})
        assert (c.max_turns, c.retriever_url, c.topk) == (6, "http://x", 3)

    def test_overrides_win_and_env_vars_are_only_a_fallback(self):
        cfg = OmegaConf.create({"masksearch": {"env": {"max_turns": 6}}})
        env = {"MASKSEARCH_INDEX_DIR": "/idx"}
        c = SearchEnvConfig.resolve(cfg, {"max_turns": "2"}, environ=env)
        assert (c.max_turns, c.retriever_index) == (2, "/idx")
        c = SearchEnvConfig.resolve({"masksearch": {"env": {"retriever_url": "http://y"}}}, environ=env)
        assert (c.retriever_url, c.retriever_index) == ("http://y", None)

    def test_absent_group_gives_defaults(self):
        assert SearchEnvConfig.resolve(OmegaConf.create({"data": {}}), environ={}) == SearchEnvConfig()
        assert SearchEnvConfig.resolve(None, environ={}) == SearchEnvConfig()

    @pytest.mark.parametrize(
        "values, message",
        [
            ({"max_turn": 3}, "Unknown masksearch.env key"),  # a typo is an error
            ({"max_turns": 0}, "max_turns"),
            ({"topk": 0}, "topk"),
            ({"search_timeout_s": 0}, "search_timeout_s"),
            ({"search_retries": -1}, "search_retries"),
            ({"retriever_index": "/a", "retriever_url": "http://b"}, "only one"),
        ],
    )
    def test_invalid(self, values, message):
        with pytest.raises(ValueError, match=message):
            SearchEnvConfig.resolve({"masksearch": {"env": values}}, environ={})

    def test_both_env_vars_is_an_error(self):
        with pytest.raises(ValueError, match="Both"):
            SearchEnvConfig.resolve(
                None, environ={"MASKSEARCH_INDEX_DIR": "/a", "MASKSEARCH_RETRIEVER_URL": "http://b"}
            )

    def test_picklable(self):
        c = SearchEnvConfig(retriever_index="/idx")
        assert pickle.loads(pickle.dumps(c)) == c


class TestPrompts:
    def test_build_messages_uses_the_data_templates(self):
        msgs = build_messages("Who wrote Tosca?")
        assert msgs[0]["role"] == "system" and "<search>" in msgs[0]["content"]
        assert msgs[1] == {"role": "user", "content": "Question: Who wrote Tosca?"}

    def test_apply_system_prompt_copies(self):
        original = [{"role": "system", "content": "a"}]
        apply_system_prompt(original, "b")
        assert original == [{"role": "system", "content": "a"}]


class TestRetrievalWrappers:
    class Broken:
        def search(self, queries, topk):
            return []  # wrong number of outcomes

    def test_wrong_outcome_count_becomes_errors(self):
        results = search_many(self.Broken(), ["a", "b"], 3)
        assert [r.error for r in results] == ["search client returned 0 results for 2 queries"] * 2

    def test_async_falls_back_to_a_thread(self, kit):
        import asyncio

        class SyncOnly:
            def search(self, queries, topk):
                return kit.StubRetriever().search(queries, topk)

        result = asyncio.run(asearch_one(SyncOnly(), "Tosca opera", 2))
        assert result.error is None and result.hits[0].title == "Tosca"


class TestEnvBatchMetrics:
    def row(self, **kw):
        base = dict.fromkeys(STATS_KEYS, 0)
        base.update(hit_turn_budget=False, hit_length_budget=False, retrieval_latency_s=0.0)
        base.update(kw)
        return base

    def test_values(self):
        rows = [
            self.row(
                num_searches=3,
                num_turns=4,
                num_invalid_actions=1,
                num_retrieval_errors=1,
                retrieval_latency_s=0.6,
                hit_turn_budget=True,
            ),
            self.row(num_searches=1, num_turns=2, hit_length_budget=True),
            {"turn_scores": []},  # a sample of another agent loop: skipped
            None,
        ]
        m = env_batch_metrics(rows)
        assert set(m) == set(METRIC_NAMES)
        assert m == {
            "env/searches_per_sample": 2.0,
            "env/turns_per_sample": 3.0,
            "env/invalid_actions_per_sample": 0.5,
            "env/retrieval_errors": 1.0,
            "env/retriever_requests": 4.0,
            "env/retrieval_error_rate": 0.25,
            "env/retrieval_latency_s": pytest.approx(0.15),
            "env/hit_turn_budget_share": 0.5,
            "env/hit_length_budget_share": 0.5,
        }

    def test_cached_answers_do_not_dilute_a_dead_retriever(self):
        # Two rollouts of one prompt: the first query was answered (and cached) before the server
        # died, so the repeat is a cache hit; the other queries reached the dead server and failed.
        # Over all searches that reads 2/3; over the searches that reached the retriever it is 1.0,
        # which trips the default 0.5 threshold as a dead retriever should.
        rows = [
            self.row(num_searches=2, num_retrieval_errors=1, num_cached_searches=1),
            self.row(num_searches=1, num_retrieval_errors=1),
        ]
        assert env_batch_metrics(rows)["env/retrieval_error_rate"] == 1.0

    def test_empty_and_numpy_values(self):
        import numpy as np

        assert env_batch_metrics([]) == {}
        m = env_batch_metrics([self.row(num_searches=np.int64(2), hit_turn_budget=np.bool_(True))])
        assert m["env/searches_per_sample"] == 2.0 and m["env/hit_turn_budget_share"] == 1.0


@pytest.mark.parametrize("module_name", ["masksearch.env.metrics", "masksearch.env.prompts"])
def test_doctests(module_name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module_name))
    assert result.attempted > 0 and result.failed == 0


def test_one_client_per_process_for_the_same_settings(tmp_path):
    from masksearch.env.retrieval import clear_search_client_cache, get_search_client

    clear_search_client_cache()
    a = get_search_client(SearchEnvConfig(retriever_index=str(tmp_path)))  # lazy: nothing is loaded yet
    assert get_search_client(SearchEnvConfig(retriever_index=str(tmp_path))) is a
    assert get_search_client(SearchEnvConfig(retriever_index=str(tmp_path), topk=5)) is not a
    clear_search_client_cache()
    with pytest.raises(ValueError, match="No retriever configured"):
        get_search_client(SearchEnvConfig())
