"""The ``hf`` rollout server: token-in/token-out generation with the log-probs the trainer recomputes."""

from __future__ import annotations

import asyncio

import pytest
import torch

from masksearch.backends.hf_rollout import HFRolloutServer, default_max_tokens


@pytest.fixture(scope="module")
def server(tiny_model_path):
    return HFRolloutServer(str(tiny_model_path), prompt_length=64, response_length=24)


@pytest.fixture(scope="module")
def prompt_ids(embedded_tokenizer):
    return embedded_tokenizer.apply_chat_template(
        [{"role": "user", "content": "Who wrote Hamlet?"}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )


def _searching_turn(context: str) -> str:
    return "<think>look it up</think><search>Hamlet author</search> and this never reaches the trainer"


def _generate(server, prompt_ids, **params):
    return asyncio.run(server.generate(prompt_ids=prompt_ids, sampling_params=params, request_id="t"))


def _teacher_forced_log_probs(model, prompt_ids, response_ids, temperature):
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt_ids) - 1 : -1].float()
    log_probs = torch.log_softmax(logits / temperature, dim=-1)
    return log_probs.gather(-1, torch.tensor(response_ids).unsqueeze(-1)).squeeze(-1)


class TestGenerate:
    def test_log_probs_match_a_teacher_forced_forward_pass(self, server, prompt_ids):
        out = _generate(
            server, prompt_ids, temperature=0.7, top_p=1.0, top_k=-1, logprobs=True, max_tokens=12
        )
        assert 0 < len(out.token_ids) <= 12 and len(out.log_probs) == len(out.token_ids)
        expected = _teacher_forced_log_probs(server.model, prompt_ids, out.token_ids, 0.7)
        assert torch.allclose(torch.tensor(out.log_probs), expected, atol=1e-4)

    def test_default_budget_follows_vllm_rule(self, server, prompt_ids):
        out = _generate(server, prompt_ids, temperature=1.0)
        assert len(out.token_ids) <= default_max_tokens(len(prompt_ids), 64, 24)
        assert default_max_tokens(60, 64, 24) == 24 and default_max_tokens(80, 64, 24) == 8
        assert default_max_tokens(100, 64, 24) == 0

    def test_greedy_is_deterministic_and_reports_step(self, server, prompt_ids):
        first = _generate(server, prompt_ids, temperature=0.0, max_tokens=8)
        second = _generate(server, prompt_ids, temperature=0.0, max_tokens=8)
        assert first.token_ids == second.token_ids
        # issue 14: stop_reason tells the truth (it used to say "completed" for a cut at the budget)
        ended_early = len(first.token_ids) < 8 or first.token_ids[-1] in server.eos_token_ids
        assert first.stop_reason == ("completed" if ended_early else "length")
        assert first.extra_fields["global_steps"] == server.global_steps

    def test_stops_at_eos_and_keeps_it(self, server, prompt_ids, embedded_tokenizer):
        eos = embedded_tokenizer.eos_token_id
        # make EOS the argmax everywhere by boosting its output-embedding bias through the weights
        state = {k: v.clone() for k, v in server.model.state_dict().items()}
        try:
            weight = server.model.get_output_embeddings().weight
            with torch.no_grad():
                weight[eos] = weight.abs().max() * 50 * torch.sign(server.model.model.norm.weight)
            out = _generate(server, prompt_ids, temperature=0.0, max_tokens=10)
            assert out.token_ids[-1] == eos and len(out.token_ids) == 1
        finally:
            server.model.load_state_dict(state)

    def test_stop_strings_end_the_turn(self, tiny_model_path, prompt_ids, embedded_tokenizer):
        # forced decoding makes the text certain: it must be cut right after the stop string
        server = HFRolloutServer(
            str(tiny_model_path),
            prompt_length=64,
            response_length=48,
            scripted_policy=f"{__name__}:_searching_turn",
        )
        out = _generate(server, prompt_ids, temperature=1.0, max_tokens=48, stop=["</search>"])
        text = embedded_tokenizer.decode(out.token_ids)
        assert "</search>" in text and text.rstrip().endswith("</search>"), text
        assert "never" not in text
        expected = _teacher_forced_log_probs(server.model, prompt_ids, out.token_ids, 1.0)
        assert torch.allclose(torch.tensor(out.log_probs), expected, atol=1e-4)

    def test_zero_budget_returns_empty(self, server, prompt_ids):
        out = _generate(server, prompt_ids, max_tokens=0)
        assert out.token_ids == [] and out.log_probs == []


class TestWeightSync:
    def test_update_weights_changes_generation_and_step(self, tiny_model_path, prompt_ids):
        server = HFRolloutServer(str(tiny_model_path), prompt_length=64, response_length=8)
        before = _generate(server, prompt_ids, temperature=0.0, max_tokens=6)
        new_state = {name: torch.randn_like(t) for name, t in server.model.state_dict().items()}
        loaded = asyncio.run(server.update_weights(new_state, global_steps=7))
        assert loaded == len(new_state) and server.global_steps == 7
        after = _generate(server, prompt_ids, temperature=0.0, max_tokens=6)
        assert after.token_ids != before.token_ids
        assert after.extra_fields["global_steps"] == 7

    def test_unknown_tensor_names_are_rejected(self, tiny_model_path):
        server = HFRolloutServer(str(tiny_model_path), prompt_length=64, response_length=8)
        with pytest.raises(KeyError, match="not in the rollout model"):
            asyncio.run(server.update_weights({"model.not_a_layer.weight": torch.zeros(1)}))
