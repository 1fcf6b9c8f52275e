"""The env outside verl: HF generator on a tiny random model, OpenAI generator against a real
(scripted) server on 127.0.0.1, the batched runner, and ``masksearch chat``."""

from __future__ import annotations

import pytest

from masksearch.env.config import SearchEnvConfig
from masksearch.env.generators import (
    GenerationError,
    HFGenerator,
    OpenAIGenerator,
    TextGenerator,
    VLLMGenerator,
    vllm_available,
)
from masksearch.env.prompts import build_messages
from masksearch.env.session import OBS_PREFIX, STATS_KEYS, STOP_STRINGS
from masksearch.env.standalone import format_trajectory, run_search_episode, run_search_episodes

QUESTION = "In which city was the composer of Tosca born?"


@pytest.fixture(scope="module")
def hf_generator(tiny_model_dir) -> HFGenerator:
    return HFGenerator(str(tiny_model_dir))


class TestHFGenerator:
    def test_episode_end_to_end(self, hf_generator, kit):
        assert isinstance(hf_generator, TextGenerator)
        config = SearchEnvConfig(max_turns=2)
        traj = run_search_episode(
            hf_generator,
            hf_generator.tokenizer,
            build_messages(QUESTION),
            kit.StubRetriever(),
            config,
            max_response_tokens=24,
        )
        assert len(traj.response_ids) == len(traj.response_mask) <= 24
        assert set(traj.stats) == set(STATS_KEYS)
        assert traj.stop_reason in {"answered", "no_action", "length_budget", "turn_budget"}
        assert QUESTION in traj.prompt_text and traj.turns
        assert traj.response_text == hf_generator.tokenizer.decode(
            traj.response_ids, skip_special_tokens=True
        )
        assert "Question:" in format_trajectory(traj)

    def test_stop_strings_cut_generation(self, hf_generator):
        tok = hf_generator.tokenizer
        prompt = tok.encode("Tell me about Tosca.", add_special_tokens=False)
        free = hf_generator.generate(prompt, 12, [])
        assert free.finish_reason in {"length", "eos"} and len(free.token_ids) <= 12
        if len(free.token_ids) < 6:
            pytest.skip("the random model stopped too early to pick a stop string")
        stop = tok.decode(free.token_ids[3:5])
        cut = hf_generator.generate(prompt, 12, [stop])
        assert cut.finish_reason == "stop" and stop in cut.text
        assert cut.token_ids == free.token_ids[: len(cut.token_ids)] and len(cut.token_ids) <= 5

    def test_batched_left_padding_matches_one_at_a_time(self, hf_generator, kit):
        config = SearchEnvConfig(max_turns=2)
        questions = [build_messages(q) for q in (QUESTION, "Who wrote Hamlet?", "Capital of France?")]
        tok = hf_generator.tokenizer
        batched = run_search_episodes(
            hf_generator, tok, questions, kit.StubRetriever(), config, batch_size=2, max_response_tokens=16
        )
        single = [
            run_search_episode(hf_generator, tok, m, kit.StubRetriever(), config, max_response_tokens=16)
            for m in questions
        ]
        assert [t.response_ids for t in batched] == [t.response_ids for t in single]


class TestOpenAIGenerator:
    @pytest.mark.parametrize(
        "model, api",
        [
            ("scripted", "completions"),  # OpenAI semantics: stop string dropped, restored from the open tag
            ("vllm-style", "completions"),  # vLLM's stop_reason names the stop string
            ("scripted", "chat"),  # chat API, partial assistant turn continued
        ],
    )
    def test_scripted_episode(self, stub_server, tokenizer, kit, model, api):
        gen = OpenAIGenerator(stub_server.url, model, api_key="sk-test", api=api)
        retriever = kit.StubRetriever()
        traj = run_search_episode(gen, tokenizer, build_messages(QUESTION), retriever, SearchEnvConfig())
        assert retriever.queries == ["Tosca opera composer", "Giacomo Puccini born"]
        assert traj.answer == "Lucca" and traj.stop_reason == "answered"
        assert traj.format_ok, traj.format_reason
        assert traj.stats["num_searches"] == 2 and traj.stats["num_invalid_actions"] == 0
        assert [t.query for t in traj.turns] == ["Tosca opera composer", "Giacomo Puccini born", None]
        assert traj.turns[0].observation.startswith(OBS_PREFIX + "Doc 1(Title: Tosca)")
        sent = [r for r in stub_server.requests() if r["model"] == model and r["path"] == api][-3:]
        assert [r["stop"] for r in sent] == [list(STOP_STRINGS)] * 3
        if api == "completions":
            assert "<information>Doc 1(Title: Tosca)" in sent[1]["prompt"]  # the context grows, text-exact
        else:
            assert (
                sent[1]["continue_final_message"] is True and sent[1]["messages"][-1]["role"] == "assistant"
            )
        gen.close()

    def test_model_that_never_uses_tags(self, stub_server, tokenizer, kit):
        gen = OpenAIGenerator(stub_server.url + "/v1", "mute")
        traj = run_search_episode(
            gen, tokenizer, build_messages(QUESTION), kit.StubRetriever(), SearchEnvConfig()
        )
        assert traj.stop_reason == "no_action" and traj.answer is None
        assert traj.stats["num_invalid_actions"] == 1

    def test_server_error_is_a_generation_error(self, stub_server, tokenizer, kit):
        gen = OpenAIGenerator(stub_server.url, "broken")
        with pytest.raises(GenerationError, match="HTTP 500"):
            run_search_episode(
                gen, tokenizer, build_messages(QUESTION), kit.StubRetriever(), SearchEnvConfig()
            )

    def test_retriever_timeout_with_the_real_client(self, stub_server, tokenizer):
        from masksearch.search_tool.client import make_search_client

        client = make_search_client(
            url=stub_server.url, timeout_s=0.3, max_attempts=1
        )  # /retrieve sleeps 2 s
        gen = OpenAIGenerator(stub_server.url, "scripted")
        traj = run_search_episode(gen, tokenizer, build_messages(QUESTION), client, SearchEnvConfig())
        assert traj.stats["num_retrieval_errors"] == 2
        assert "<information>Search failed: search timed out after 0.3s</information>" in traj.response_text
        assert traj.answer == "Lucca"  # the rollout went on


def test_vllm_generator_is_import_guarded():
    if vllm_available():
        pytest.skip("vllm is installed")
    with pytest.raises(ImportError, match="vllm is not installed"):
        VLLMGenerator("any")


class TestChatCommand:
    def test_chat_prints_the_trajectory(self, stub_server, tiny_model_dir, real_index, capsys):
        from masksearch.cli.main import main

        rc = main(
            [
                "chat",
                "--backend",
                "openai",
                "--url",
                stub_server.url,
                "--model",
                "scripted",
                "--tokenizer",
                str(tiny_model_dir),
                "--index",
                str(real_index),
                "--topk",
                "2",
                QUESTION,
            ]
        )
        out = capsys.readouterr().out
        assert rc == 0
        assert "[search] 'Tosca opera composer'" in out
        assert "Doc 1(Title: Tosca)" in out
        assert "Answer: Lucca" in out and "Stopped: answered" in out

    def test_chat_without_a_retriever_is_a_one_line_error(self, monkeypatch, capsys):
        from masksearch.cli.main import main

        monkeypatch.delenv("MASKSEARCH_INDEX_DIR", raising=False)
        monkeypatch.delenv("MASKSEARCH_RETRIEVER_URL", raising=False)
        rc = main(["chat", "--model", "m", "Who?"])
        err = capsys.readouterr().err.strip()
        assert (
            rc == 2 and err.startswith("masksearch chat: error: No retriever configured") and "\n" not in err
        )
