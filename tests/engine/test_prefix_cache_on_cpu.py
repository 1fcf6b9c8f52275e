"""The prefix cache: finished rows' KV reused by later prompts that start with the same tokens.

Checked against the decoder without a cache (same greedy tokens, same log-probs) and against a
teacher-forced unbatched forward pass, for the two cases it exists for: the next turn of an episode
(prompt = earlier context + response + observation) and an RL group (one prompt n times). The model
is loaded in float64, so "same" means within 1e-9, which float rounding cannot reach on any CPU
(fp32 gaps depend on the CPU's kernels and the batch shape; see test_hf_rollout_on_cpu.py).
"""

from __future__ import annotations

import asyncio

import pytest
import torch

from masksearch.backends.hf_rollout import HFRolloutServer
from masksearch.engine.hf_decode import BatchDecoder, Row, RowSpec
from masksearch.engine.prefix_cache import PrefixCache

QUESTIONS = [
    "Who wrote Hamlet and in which year was it first performed on stage?",
    "What is the capital of France? Answer in one word, then explain where it lies.",
    "List three colours and explain why the sky is blue, in detail please.",
]
EXACT = 1e-9  # float64: cached vs recomputed vs teacher-forced log-probs differ by ~1e-14 (issue 21)


@pytest.fixture(scope="module")
def model_and_tokenizer(peaked_model_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(peaked_model_path), dtype=torch.float64).eval()
    return model, AutoTokenizer.from_pretrained(str(peaked_model_path))


@pytest.fixture(scope="module")
def prompts(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], add_generation_prompt=True, tokenize=True, return_dict=False
        )
        for q in QUESTIONS
    ]


def _decoder(model_and_tokenizer, cache=None, generator=None):
    model, tokenizer = model_and_tokenizer
    return BatchDecoder(
        model,
        tokenizer,
        [tokenizer.eos_token_id],
        tokenizer.eos_token_id,
        prefix_cache=cache,
        generator=generator,
    )


def _run(decoder, specs):
    rows = [Row(spec) for spec in specs]
    decoder.add(rows)
    while decoder.running:
        decoder.step()
    return rows


def _teacher_forced(model, prompt, tokens):
    ids = torch.tensor([list(prompt) + list(tokens)])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1 : -1]
    return torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(tokens)[:, None]).squeeze(-1)


def _close(log_probs, expected):
    got = torch.as_tensor(log_probs, dtype=torch.float64)
    return got.shape == expected.shape and torch.allclose(got, expected, rtol=0, atol=EXACT)


def _kv(length, heads=2, dim=4, layers=2):
    return [(torch.randn(heads, length, dim), torch.randn(heads, length, dim)) for _ in range(layers)]


class TestPrefixCache:
    def test_longest_common_prefix_wins_and_one_prompt_token_stays(self):
        cache = PrefixCache(1 << 20, min_tokens=2)
        cache.put([1, 2, 3, 4], _kv(4))
        cache.put([1, 2, 9, 9, 9], _kv(5))
        entry, m = cache.lookup([1, 2, 3, 4, 5, 6])
        assert m == 4 and entry.tokens.tolist() == [1, 2, 3, 4]
        entry, m = cache.lookup([1, 2, 3, 4])  # the whole prompt is stored: its last token is fed again
        assert m == 3
        assert cache.lookup([7, 8, 9]) == (None, 0)
        assert (cache.hits, cache.misses) == (2, 1)

    def test_a_stored_prefix_gives_way_to_its_continuation(self):
        cache = PrefixCache(1 << 20, min_tokens=2)
        cache.put([1, 2, 3], _kv(3))
        cache.put([1, 2, 3, 4, 5], _kv(5))
        cache.put([1, 2], _kv(2))  # covered by the longer entry: nothing new stored
        assert len(cache) == 1 and cache.lookup([1, 2, 3, 4, 5, 6])[1] == 5

    def test_bytes_bound_evicts_least_recently_used(self):
        one = sum(k.numel() * 4 + v.numel() * 4 for k, v in _kv(8))
        cache = PrefixCache(2 * one, min_tokens=2)
        cache.put([1] * 8, _kv(8))
        cache.put([2] * 8, _kv(8))
        cache.lookup([1] * 9)  # touch the first
        cache.put([3] * 8, _kv(8))
        assert cache.nbytes <= 2 * one and len(cache) == 2
        assert cache.lookup([2] * 9) == (None, 0) and cache.lookup([1] * 9)[1] == 8

    def test_clear_bumps_the_epoch_and_short_or_mismatched_kv_is_refused(self):
        cache = PrefixCache(1 << 20, min_tokens=4)
        cache.put([1, 2], _kv(2))  # shorter than min_tokens
        assert len(cache) == 0
        with pytest.raises(ValueError, match="KV of 3 positions for 5 tokens"):
            cache.put([1, 2, 3, 4, 5], _kv(3))
        cache.put([1, 2, 3, 4, 5], _kv(5))
        cache.clear()
        assert len(cache) == 0 and cache.nbytes == 0 and cache.epoch == 1


class TestDecoderReuse:
    def test_next_turn_reuses_the_episode_and_matches_a_full_prefill(self, model_and_tokenizer, prompts):
        model, _ = model_and_tokenizer
        cache = PrefixCache(1 << 30)
        warm, cold = _decoder(model_and_tokenizer, cache), _decoder(model_and_tokenizer)
        first = _run(warm, [RowSpec(p, max_tokens=8) for p in prompts])
        assert len(cache) == len(prompts)
        # turn 2: the whole context so far plus an "observation" the model did not write
        observation = [11, 12, 13, 14, 15]
        nexts = [list(p) + row.tokens + observation for p, row in zip(prompts, first, strict=True)]
        before = warm.prefilled_tokens
        reused = _run(warm, [RowSpec(n, max_tokens=8) for n in nexts])
        full = _run(cold, [RowSpec(n, max_tokens=8) for n in nexts])
        # only the observation (and the last response token, never fed) was prefilled
        assert warm.prefilled_tokens - before == len(prompts) * (len(observation) + 1)
        for a, b, prompt in zip(reused, full, nexts, strict=True):
            assert a.tokens == b.tokens
            assert _close(a.log_probs, torch.tensor(b.log_probs, dtype=torch.float64))
            assert _close(a.log_probs, _teacher_forced(model, prompt, a.tokens))

    def test_reusing_and_fresh_rows_in_one_call_do_not_mix(self, model_and_tokenizer, prompts):
        cache = PrefixCache(1 << 30)
        warm, cold = _decoder(model_and_tokenizer, cache), _decoder(model_and_tokenizer)
        first = _run(warm, [RowSpec(prompts[0], max_tokens=6)])
        mixed = [list(prompts[0]) + first[0].tokens + [21, 22], list(prompts[1]), list(prompts[2])]
        passes = warm.forward_passes
        out = _run(warm, [RowSpec(p, max_tokens=6) for p in mixed])
        ref = _run(cold, [RowSpec(p, max_tokens=6) for p in mixed])
        assert [r.tokens for r in out] == [r.tokens for r in ref]
        assert len({tuple(r.tokens) for r in out}) == 3  # distinguishable rows
        # the fresh rows' shared chat-template prefix once, one prefill of every row's rest (all on
        # cached KV now), then the decode steps
        assert warm.forward_passes - passes == 1 + 1 + 5

    def test_a_prefix_shared_by_one_calls_prompts_is_prefilled_once(self, model_and_tokenizer, prompts):
        model, _ = model_and_tokenizer
        cache = PrefixCache(1 << 30)
        warm, cold = _decoder(model_and_tokenizer, cache), _decoder(model_and_tokenizer)
        system = list(range(100, 160))  # e.g. a system prompt and its worked example, 60 tokens
        specs = [RowSpec(system + list(p), max_tokens=6) for p in prompts]
        out, ref = _run(warm, specs), _run(cold, specs)
        shared = len(system)  # the chat template's own common start comes on top
        while all(
            len(s.prompt_ids) > shared + 1 and s.prompt_ids[shared] == specs[0].prompt_ids[shared]
            for s in specs
        ):
            shared += 1
        assert shared > len(system)
        assert warm.prefilled_tokens == shared + sum(len(s.prompt_ids) - shared for s in specs)
        assert cold.prefilled_tokens == sum(len(s.prompt_ids) for s in specs)
        for a, b in zip(out, ref, strict=True):
            assert a.tokens == b.tokens
            assert _close(a.log_probs, _teacher_forced(model, a.spec.prompt_ids, a.tokens))

    def test_a_group_of_identical_prompts_is_prefilled_once(self, model_and_tokenizer, prompts):
        model, _ = model_and_tokenizer
        decoder = _decoder(model_and_tokenizer, generator=torch.Generator().manual_seed(0))
        group = [RowSpec(prompts[0], max_tokens=10, temperature=1.0) for _ in range(4)]
        rows = _run(decoder, [*group, RowSpec(prompts[1], max_tokens=10, temperature=1.0)])
        assert decoder.prefilled_tokens == len(prompts[0]) + len(prompts[1])
        assert len({tuple(r.tokens) for r in rows[:4]}) > 1  # the group's samples are independent
        for row in rows:
            assert _close(row.log_probs, _teacher_forced(model, row.spec.prompt_ids, row.tokens))


def test_weight_update_empties_the_servers_cache(peaked_model_path, prompts):
    server = HFRolloutServer(str(peaked_model_path), 256, 16, options={"batch_wait_ms": 0})
    params = {"temperature": 0.0, "max_tokens": 4}

    async def one(p):
        return await server.generate(prompt_ids=p, sampling_params=params, request_id="a")

    out = asyncio.run(one(prompts[0]))
    assert len(server.prefix_cache) == 1
    asyncio.run(one(list(prompts[0]) + out.token_ids + [5, 6]))
    assert server.stats()["prefix_cache_hits"] == 1
    asyncio.run(server.update_weights({k: v.clone() for k, v in server.model.state_dict().items()}))
    assert len(server.prefix_cache) == 0 and server.prefix_cache.epoch == 1


def test_prefix_cache_mb_zero_turns_it_off_and_negative_is_refused(peaked_model_path):
    with pytest.raises(ValueError, match="prefix_cache_mb must be >= 0"):
        HFRolloutServer(str(peaked_model_path), 64, 8, options={"prefix_cache_mb": -1})
    server = HFRolloutServer(str(peaked_model_path), 64, 8, options={"prefix_cache_mb": 0})
    assert server.prefix_cache.max_bytes == 0
