"""SearchAgentLoop driven directly, built as verl's AgentLoopWorker builds it, with a scripted policy.

The policy returns verl's real ``TokenOutput``; the tokenizer is SmolLM2's; retrieval is a stub
retriever, the real in-process BM25 index, or the real HTTP client against a dead port.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masksearch.core.grammar import extract_answer, validate_format
from masksearch.env.session import OBS_PREFIX, OBS_SUFFIX, STATS_KEYS, STOP_STRINGS

SEARCH_1 = "<think>I need the composer of Tosca.</think>\n<search>Tosca opera composer</search>"
SEARCH_2 = "<think>Puccini. Where was he born?</think>\n<search>Giacomo Puccini born</search>"
ANSWER = "<think>He was born in Lucca.</think>\n<answer> Lucca </answer>"


def run(make_loop, kit, policy, messages=None, sampling_params=None, **loop_kwargs):
    async def go():
        loop = make_loop(policy, **loop_kwargs)
        return await loop.run(dict(sampling_params or kit.SAMPLING_PARAMS), **kit.row_kwargs(messages))

    return asyncio.run(go())


def segments(mask: list[int]) -> list[tuple[int, int, int]]:
    """Runs of equal mask values as (value, start, end)."""
    out: list[tuple[int, int, int]] = []
    for i, v in enumerate(mask):
        if out and out[-1][0] == v:
            out[-1] = (v, out[-1][1], i + 1)
        else:
            out.append((v, i, i + 1))
    return out


def check_alignment(out, policy, tokenizer) -> None:
    """Model runs are exactly (prefixes of) the policy's tokens and log-probs, in call order;
    observation runs have log-prob 0.0; every call saw the prompt plus the response so far."""
    assert len(out.response_ids) == len(out.response_mask)
    if out.response_logprobs is not None:
        assert len(out.response_logprobs) == len(out.response_ids)
    model_runs = [s for s in segments(out.response_mask) if s[0] == 1]
    calls = [c for c in policy.calls if c.token_ids]
    assert len(model_runs) <= len(calls)
    for (_, start, end), call in zip(model_runs, calls, strict=False):
        assert out.response_ids[start:end] == call.token_ids[: end - start]
        if out.response_logprobs is not None:
            assert out.response_logprobs[start:end] == call.log_probs[: end - start]
    for v, start, end in segments(out.response_mask):
        if v == 0 and out.response_logprobs is not None:
            assert out.response_logprobs[start:end] == [0.0] * (end - start)
    for call in policy.calls:
        n = len(call.prompt_ids) - len(out.prompt_ids)
        assert call.prompt_ids == out.prompt_ids + out.response_ids[:n]


class TestSearchAgentLoop:
    def test_search_search_answer(self, make_loop, kit, tokenizer):
        policy = kit.ScriptedPolicy(tokenizer, [SEARCH_1, SEARCH_2, ANSWER])
        retriever = kit.StubRetriever()
        out = run(make_loop, kit, policy, search_client=retriever)

        assert [v for v, _, _ in segments(out.response_mask)] == [1, 0, 1, 0, 1]
        check_alignment(out, policy, tokenizer)
        obs = [tokenizer.decode(out.response_ids[s:e]) for v, s, e in segments(out.response_mask) if v == 0]
        assert obs[0] == (
            f"{OBS_PREFIX}Doc 1(Title: Tosca) Tosca is an opera in three acts by Giacomo Puccini.{OBS_SUFFIX}"
        )
        assert obs[1].startswith(
            f"{OBS_PREFIX}Doc 1(Title: Giacomo Puccini) Giacomo Puccini was born in Lucca"
        )
        assert tokenizer.decode(out.response_ids) == SEARCH_1 + obs[0] + SEARCH_2 + obs[1] + ANSWER
        assert retriever.queries == ["Tosca opera composer", "Giacomo Puccini born"]

        # The prompt: the row's messages through the chat template with the generation prompt.
        expected_prompt = tokenizer.apply_chat_template(
            kit.MESSAGES, tokenize=True, add_generation_prompt=True, return_dict=False
        )
        assert out.prompt_ids == list(expected_prompt)

        # Sampling params: verl's, plus budget and stop strings, fresh for every call.
        used = 0
        for call, (_, start, _) in zip(
            policy.calls, [s for s in segments(out.response_mask) if s[0] == 1], strict=True
        ):
            used = start
            assert call.sampling_params == {
                **kit.SAMPLING_PARAMS,
                "max_tokens": 256 - used,
                "stop": ["</search>", "</answer>"],
                "include_stop_str_in_output": True,
            }
        assert len({c.request_id for c in policy.calls}) == 1  # one sticky request id per sample

        ef = out.extra_fields
        assert {k: ef[k] for k in STATS_KEYS if k != "retrieval_latency_s"} == {
            "num_searches": 2,
            "num_turns": 3,
            "num_invalid_actions": 0,
            "num_retrieval_errors": 0,
            "num_cached_searches": 0,
            "hit_turn_budget": False,
            "hit_length_budget": False,
        }
        assert ef["retrieval_latency_s"] == pytest.approx(0.02)
        assert ef["env_stop_reason"] == "answered"
        assert ef["min_global_steps"] == 3 and ef["max_global_steps"] == 3
        assert out.num_turns == 1 + 3 + 2
        assert out.metrics.generate_sequences >= 0 and out.metrics.tool_calls >= 0

        # What a reward function sees: the response only, special tokens skipped.
        solution = tokenizer.decode(out.response_ids, skip_special_tokens=True)
        assert extract_answer(solution) == "Lucca"
        assert validate_format(solution).ok

    def test_backend_that_ignores_stop_strings_gives_the_same_rollout(self, make_loop, kit, tokenizer):
        turns = [
            kit.Turn(SEARCH_1, overrun=" and then <answer> Rome </answer> and more"),
            kit.Turn(SEARCH_2, overrun="<search>second query</search>"),
            kit.Turn(ANSWER, overrun="\nThanks for asking!", eos=True),
        ]
        honoured = run(
            make_loop, kit, kit.ScriptedPolicy(tokenizer, turns), search_client=kit.StubRetriever()
        )
        careless_policy = kit.ScriptedPolicy(tokenizer, turns, honour_stops=False)
        careless = run(make_loop, kit, careless_policy, search_client=kit.StubRetriever())
        # The EOS after </answer> is dropped too: the turn ends at the stop string.
        assert careless.response_ids == honoured.response_ids[: len(careless.response_ids)]
        assert tokenizer.decode(careless.response_ids).endswith("</answer>")
        assert careless.response_mask == honoured.response_mask[: len(careless.response_mask)]
        assert careless.extra_fields["num_searches"] == 2
        assert careless.extra_fields["num_invalid_actions"] == 0
        assert "Rome" not in tokenizer.decode(careless.response_ids)
        check_alignment(careless, careless_policy, tokenizer)

    def test_max_turns_stops_without_running_the_last_search(self, make_loop, kit, tokenizer):
        policy = kit.ScriptedPolicy(tokenizer, [SEARCH_1, SEARCH_2, SEARCH_2, ANSWER])
        retriever = kit.StubRetriever()
        out = run(make_loop, kit, policy, env={"max_turns": 2}, search_client=retriever)
        assert len(policy.calls) == 2
        assert retriever.queries == ["Tosca opera composer"]
        assert [v for v, _, _ in segments(out.response_mask)] == [1, 0, 1]
        assert out.extra_fields["hit_turn_budget"] is True
        assert out.extra_fields["hit_length_budget"] is False
        assert out.extra_fields["env_stop_reason"] == "turn_budget"
        assert out.extra_fields["num_searches"] == 1 and out.extra_fields["num_turns"] == 2

    def test_yaml_kwargs_override_the_trainer_config(self, make_loop, kit, tokenizer):
        policy = kit.ScriptedPolicy(tokenizer, [SEARCH_1, SEARCH_2, ANSWER])
        out = run(
            make_loop,
            kit,
            policy,
            env={"max_turns": 4},
            yaml_kwargs={"max_turns": 1},
            search_client=kit.StubRetriever(),
        )
        assert len(policy.calls) == 1
        assert out.extra_fields["hit_turn_budget"] is True

    def test_misspelled_yaml_kwarg_is_an_error(self, make_loop, kit, tokenizer):
        """A typo in the agent-loop YAML entry fails through the typed path (it was only a warning)."""
        from hydra.errors import InstantiationException  # how verl's worker sees the loop's ValueError

        policy = kit.ScriptedPolicy(tokenizer, [ANSWER])
        with pytest.raises(
            InstantiationException, match=r"Unknown masksearch\.env key\(s\) \['max_turn'\]; valid: "
        ):
            run(make_loop, kit, policy, yaml_kwargs={"max_turn": 1}, search_client=kit.StubRetriever())

    @pytest.mark.parametrize("honour_max_tokens", [True, False])  # a backend may overshoot max_tokens
    def test_length_budget(self, make_loop, kit, tokenizer, honour_max_tokens):
        long_think = kit.Turn("<think>" + "let me think " * 40 + "</think>", eos=True)
        policy = kit.ScriptedPolicy(tokenizer, [SEARCH_1, long_think], honour_max_tokens=honour_max_tokens)
        out = run(make_loop, kit, policy, response_length=90, search_client=kit.StubRetriever())
        assert len(out.response_ids) == 90
        assert out.extra_fields["hit_length_budget"] is True
        assert out.extra_fields["env_stop_reason"] == "length_budget"
        assert out.extra_fields["num_invalid_actions"] == 0
        _first, second = policy.calls
        assert second.sampling_params["max_tokens"] == 90 - (len(second.prompt_ids) - len(out.prompt_ids))
        check_alignment(out, policy, tokenizer)

    def test_observation_cut_to_max_obs_tokens_keeps_the_closing_tag(self, make_loop, kit, tokenizer):
        policy = kit.ScriptedPolicy(tokenizer, [SEARCH_1, ANSWER])
        out = run(
            make_loop, kit, policy, env={"max_obs_tokens": 20, "topk": 3}, search_client=kit.StubRetriever()
        )
        (_, start, end) = next(s for s in segments(out.response_mask) if s[0] == 0)
        assert end - start == 20
        text = tokenizer.decode(out.response_ids[start:end])
        full_body = "Doc 1(Title: Tosca) Tosca is an opera in three acts by Giacomo Puccini."
        assert text.startswith(OBS_PREFIX + "Doc 1(Title: Tosca)") and text.endswith(OBS_SUFFIX)
        assert full_body.startswith(text[len(OBS_PREFIX) : -len(OBS_SUFFIX)])
        assert out.extra_fields["hit_length_budget"] is False
        assert extract_answer(tokenizer.decode(out.response_ids, skip_special_tokens=True)) == "Lucca"

    def test_observation_cut_to_the_remaining_budget(self, make_loop, kit, tokenizer):
        n_search = len(tokenizer.encode(SEARCH_1, add_special_tokens=False))
        policy = kit.ScriptedPolicy(tokenizer, [SEARCH_1, ANSWER])
        out = run(make_loop, kit, policy, response_length=n_search + 12, search_client=kit.StubRetriever())
        assert len(out.response_ids) == n_search + 12
        assert out.response_mask == [1] * n_search + [0] * 12
        assert tokenizer.decode(out.response_ids[n_search:]).endswith(OBS_SUFFIX)
        assert len(policy.calls) == 1
        assert out.extra_fields["hit_length_budget"] is True
        assert out.extra_fields["num_searches"] == 1

    @pytest.mark.parametrize(
        "retriever_kwargs, error_text",
        [
            # the client reports a timeout as a value
            ({"fail_with": "search timed out after 1s"}, "Search failed: search timed out after 1s"),
            # a client that breaks its contract and raises
            ({"raise_exc": RuntimeError("boom")}, "Search failed: RuntimeError: boom"),
        ],
    )
    def test_retrieval_failure_becomes_an_observation(
        self, make_loop, kit, tokenizer, retriever_kwargs, error_text
    ):
        policy = kit.ScriptedPolicy(tokenizer, [SEARCH_1, SEARCH_2, ANSWER])
        out = run(make_loop, kit, policy, search_client=kit.StubRetriever(**retriever_kwargs))
        text = tokenizer.decode(out.response_ids)
        assert text.count(f"<information>{error_text}</information>") == 2
        assert out.extra_fields["num_retrieval_errors"] == 2
        assert out.extra_fields["num_searches"] == 2
        assert out.extra_fields["env_stop_reason"] == "answered"

    def test_real_http_client_against_a_dead_port(self, make_loop, kit, tokenizer):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # closed again: nothing listens there
        env = {"retriever_url": f"http://127.0.0.1:{port}", "search_timeout_s": 2.0, "search_retries": 0}
        policy = kit.ScriptedPolicy(tokenizer, [SEARCH_1, ANSWER])
        out = run(make_loop, kit, policy, env=env)
        assert f"<information>Search failed: search service unreachable at http://127.0.0.1:{port}" in (
            tokenizer.decode(out.response_ids)
        )
        assert out.extra_fields["num_retrieval_errors"] == 1
        assert out.extra_fields["env_stop_reason"] == "answered"

    def test_real_in_process_index(self, make_loop, kit, tokenizer, real_index):
        policy = kit.ScriptedPolicy(tokenizer, [SEARCH_2, ANSWER])
        out = run(make_loop, kit, policy, env={"retriever_index": str(real_index), "topk": 2})
        obs = tokenizer.decode(
            out.response_ids[
                len(policy.calls[0].token_ids) : len(policy.calls[1].prompt_ids) - len(out.prompt_ids)
            ]
        )
        assert obs.startswith(OBS_PREFIX + "Doc 1(Title: Giacomo Puccini) Giacomo Puccini was born in Lucca")
        assert obs.count("Doc ") <= 2 and obs.endswith(OBS_SUFFIX)
        assert out.extra_fields["num_retrieval_errors"] == 0

    def test_prompt_with_an_answer_tag_does_not_leak(self, make_loop, kit, tokenizer):
        messages = [
            {"role": "system", "content": "Format: <answer> Beijing </answer>"},
            {"role": "user", "content": "Question: what is <answer>Paris</answer>?"},
        ]
        policy = kit.ScriptedPolicy(tokenizer, [kit.Turn("<think>I am not sure.</think>", eos=True)])
        out = run(make_loop, kit, policy, messages=messages, search_client=kit.StubRetriever())
        assert "<answer>Paris</answer>" in tokenizer.decode(out.prompt_ids)
        solution = tokenizer.decode(out.response_ids, skip_special_tokens=True)
        assert "<answer>" not in solution
        assert extract_answer(solution) is None
        assert out.extra_fields["env_stop_reason"] == "no_action"

    def test_system_prompt_override(self, make_loop, kit, tokenizer):
        policy = kit.ScriptedPolicy(tokenizer, [ANSWER])
        out = run(
            make_loop, kit, policy, env={"system_prompt": "CUSTOM SYSTEM"}, search_client=kit.StubRetriever()
        )
        prompt = tokenizer.decode(out.prompt_ids)
        assert "CUSTOM SYSTEM" in prompt and kit.MESSAGES[0]["content"] not in prompt

    @pytest.mark.parametrize(
        "turns, honour_stops, invalid, searches, stop_reason",
        [
            # an empty query: counted, told so, and the episode goes on
            (["<think>a</think><search>   </search>", ANSWER], True, 1, 0, "answered"),
            # a closing </search> with no opening tag: a malformed (empty) query
            (["<think>a</think>Lucca</search>", ANSWER], True, 1, 0, "answered"),
            # 50 <search> tags in one turn, one closing tag: only the last query runs, 49 extra
            (
                ["<think>a</think>" + "<search>q " * 49 + "<search>Tosca opera composer</search>", ANSWER],
                True,
                49,
                1,
                "answered",
            ),
            # 50 complete searches from a backend that ignores stops: the turn ends after the first
            ([{"text": SEARCH_1, "overrun": "<search>more</search>" * 49}, ANSWER], False, 0, 1, "answered"),
            # text after </answer> inside the same token (">.")
            (["<think>a</think><answer> Lucca </answer>."], True, 1, 0, "answered"),
            # a turn with neither tag that ends with EOS
            ([{"text": "Lucca, I think.", "eos": True}], True, 1, 0, "no_action"),
            # </answer> without <answer>
            (["<think>a</think>Lucca</answer>"], True, 1, 0, "no_action"),
        ],
    )
    def test_invalid_actions(
        self, make_loop, kit, tokenizer, turns, honour_stops, invalid, searches, stop_reason
    ):
        turns = [kit.Turn(**t) if isinstance(t, dict) else t for t in turns]
        retriever = kit.StubRetriever()
        policy = kit.ScriptedPolicy(tokenizer, turns, honour_stops=honour_stops)
        out = run(make_loop, kit, policy, response_length=1024, search_client=retriever)
        assert out.extra_fields["num_invalid_actions"] == invalid
        assert out.extra_fields["num_searches"] == searches
        assert out.extra_fields["env_stop_reason"] == stop_reason
        check_alignment(out, policy, tokenizer)
        if searches:
            assert retriever.queries == ["Tosca opera composer"]

    def test_empty_query_feedback_is_an_observation(self, make_loop, kit, tokenizer):
        policy = kit.ScriptedPolicy(tokenizer, ["<think>a</think><search></search>", ANSWER])
        out = run(make_loop, kit, policy, search_client=kit.StubRetriever())
        obs = [tokenizer.decode(out.response_ids[s:e]) for v, s, e in segments(out.response_mask) if v == 0]
        assert obs == [
            f"{OBS_PREFIX}No search was run: put a non-empty query between <search> and </search>.{OBS_SUFFIX}"
        ]

    def test_unclosed_search_at_the_length_limit(self, make_loop, kit, tokenizer):
        policy = kit.ScriptedPolicy(tokenizer, [kit.Turn("<think>a</think><search>" + "long query " * 50)])
        out = run(make_loop, kit, policy, response_length=32, search_client=kit.StubRetriever())
        assert len(out.response_ids) == 32 and set(out.response_mask) == {1}
        assert out.extra_fields["hit_length_budget"] is True
        assert out.extra_fields["num_invalid_actions"] == 0 and out.extra_fields["num_searches"] == 0

    def test_extra_fields_have_the_same_keys_on_every_exit_path(self, make_loop, kit, tokenizer):
        scenarios = {
            "answered": (kit.ScriptedPolicy(tokenizer, [SEARCH_1, ANSWER]), {}),
            "no_action": (kit.ScriptedPolicy(tokenizer, [kit.Turn("hello", eos=True)]), {}),
            "turn_budget": (kit.ScriptedPolicy(tokenizer, [SEARCH_1]), {"env": {"max_turns": 1}}),
            "length_budget": (kit.ScriptedPolicy(tokenizer, [SEARCH_1]), {"response_length": 10}),
            "aborted": (kit.ScriptedPolicy(tokenizer, [SEARCH_1], aborted_call=0), {}),
        }
        keys = set()
        for expected, (policy, kwargs) in scenarios.items():
            out = run(make_loop, kit, policy, search_client=kit.StubRetriever(), **kwargs)
            assert out.extra_fields["env_stop_reason"] == expected
            keys.add(frozenset(out.extra_fields))
            assert all(
                isinstance(out.extra_fields[k], bool) for k in ("hit_turn_budget", "hit_length_budget")
            )
        assert len(keys) == 1
        assert set(STATS_KEYS) <= next(iter(keys))
        assert {"min_global_steps", "max_global_steps", "turn_scores", "tool_rewards"} <= next(iter(keys))

    def test_global_steps_span_the_trajectory(self, make_loop, kit, tokenizer):
        policy = kit.ScriptedPolicy(tokenizer, [SEARCH_1, SEARCH_2, ANSWER], global_steps=[3, 4, 5])
        out = run(make_loop, kit, policy, search_client=kit.StubRetriever())
        assert (out.extra_fields["min_global_steps"], out.extra_fields["max_global_steps"]) == (3, 5)

    def test_no_logprobs_from_the_backend(self, make_loop, kit, tokenizer):
        policy = kit.ScriptedPolicy(tokenizer, [SEARCH_1, ANSWER], with_logprobs=False)
        params = {**kit.SAMPLING_PARAMS, "logprobs": False}
        out = run(make_loop, kit, policy, sampling_params=params, search_client=kit.StubRetriever())
        assert out.response_logprobs is None

    def test_output_survives_the_v1_transfer_queue_conversion(self, make_loop, kit, tokenizer):
        from verl.utils.tensordict_utils import list_of_dict_to_tensordict

        out = run(
            make_loop,
            kit,
            kit.ScriptedPolicy(tokenizer, [SEARCH_1, ANSWER]),
            search_client=kit.StubRetriever(),
        )
        field = out.as_dict()  # what AgentLoopWorkerTQ._agent_loop_postprocess stores per sample
        assert field["rollout_log_probs"].shape == field["responses"].shape == field["response_mask"].shape
        assert field["extra_fields"]["num_searches"] == 1
        td = list_of_dict_to_tensordict([field, field])
        back = td.get("extra_fields").tolist()  # as the trainer reads it back (trainer_base.py:1909)
        assert [b["num_searches"] for b in back] == [1, 1]

    def test_missing_retriever_is_a_loud_config_error(self, make_loop, kit, tokenizer, monkeypatch):
        monkeypatch.delenv("MASKSEARCH_INDEX_DIR", raising=False)
        monkeypatch.delenv("MASKSEARCH_RETRIEVER_URL", raising=False)

        async def go():
            make_loop(kit.ScriptedPolicy(tokenizer, [ANSWER]))

        # hydra wraps the ValueError in an InstantiationException carrying the same message
        with pytest.raises(Exception, match="No retriever configured"):
            asyncio.run(go())

    def test_registered_under_its_name(self):
        from verl.experimental.agent_loop.agent_loop import _agent_loop_registry

        from masksearch.env.agent_loop import AGENT_NAME, SearchAgentLoop

        assert _agent_loop_registry[AGENT_NAME] == {
            "_target_": f"{SearchAgentLoop.__module__}.SearchAgentLoop"
        }


# --------------------------------------------------------------------------- properties
_TURN_KINDS = st.sampled_from(
    ["search", "answer", "think_eos", "empty_search", "unclosed", "multi", "overrun"]
)


def _turn(kind: str, word: str, kit):
    return {
        "search": kit.Turn(f"<think>{word}</think><search>{word} born</search>"),
        "answer": kit.Turn(f"<think>ok</think><answer> {word} </answer>"),
        "think_eos": kit.Turn(f"<think>{word}</think>", eos=True),
        "empty_search": kit.Turn("<think>x</think><search> </search>"),
        "unclosed": kit.Turn(f"<think>{word}</think><search>{word} " * 8),
        "multi": kit.Turn(f"<search>{word} <search>Tosca</search>"),
        "overrun": kit.Turn(f"<search>{word}</search>", overrun=f"<answer>{word}</answer>" * 3),
    }[kind]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kinds=st.lists(_TURN_KINDS, min_size=1, max_size=6),
    word=st.sampled_from(["Puccini", "Lucca", "Paris", "Eiffel"]),
    response_length=st.integers(min_value=8, max_value=200),
    max_turns=st.integers(min_value=1, max_value=5),
    max_obs_tokens=st.integers(min_value=10, max_value=60),
    honour_stops=st.booleans(),
    honour_max_tokens=st.booleans(),
)
def test_budgets_masks_and_turns_hold_for_any_script(
    make_loop,
    kit,
    tokenizer,
    kinds,
    word,
    response_length,
    max_turns,
    max_obs_tokens,
    honour_stops,
    honour_max_tokens,
):
    policy = kit.ScriptedPolicy(
        tokenizer,
        [_turn(k, word, kit) for k in kinds],
        honour_stops=honour_stops,
        honour_max_tokens=honour_max_tokens,
    )
    env = {"max_turns": max_turns, "max_obs_tokens": max_obs_tokens, "topk": 3}
    out = run(
        make_loop, kit, policy, response_length=response_length, env=env, search_client=kit.StubRetriever()
    )

    assert len(out.response_ids) <= response_length
    assert len(policy.calls) <= max_turns
    check_alignment(out, policy, tokenizer)
    for call in policy.calls:
        assert 1 <= call.sampling_params["max_tokens"] <= response_length
        assert call.sampling_params["stop"] == list(STOP_STRINGS)
    for v, start, end in segments(out.response_mask):
        if v == 0:
            assert end - start <= max_obs_tokens
            text = tokenizer.decode(out.response_ids[start:end])
            assert OBS_PREFIX.startswith(text) or text.startswith(OBS_PREFIX)
            assert text.endswith(OBS_SUFFIX) or end == len(out.response_ids)
    ef = out.extra_fields
    assert set(STATS_KEYS) <= set(ef)
    assert ef["num_turns"] == len(policy.calls)
    assert ef["num_searches"] <= ef["num_turns"]
    assert not (ef["hit_turn_budget"] and ef["hit_length_budget"])
    assert ef["hit_length_budget"] == (ef["env_stop_reason"] == "length_budget")
    if ef["hit_length_budget"]:
        assert len(out.response_ids) == response_length or out.response_mask[-1] == 1
