"""HFGenerator: finished rows cost no more decode steps, per-row stops/budgets, memory-sized batches.

The generators load the model in float64: batched rows then equal unbatched ones to 1e-9, a bound
float rounding cannot reach on any CPU (fp32 gaps depend on the CPU's kernels and the batch shape;
see tests/backends/test_hf_rollout_on_cpu.py), and greedy ties cannot flip between batch shapes.
"""

from __future__ import annotations

import pytest
import torch

from masksearch.engine.hf_decode import batch_size_for_memory, kv_bytes_per_token
from masksearch.env.generators import HFGenerator

QUESTIONS = ["Who wrote Hamlet?", "hi", "What is 2 + 2?", "Name a colour.", "Translate 'cat' to French."]
EXACT = 1e-9  # float64: batched vs unbatched differ by ~1e-14 (issue 21)


@pytest.fixture(scope="module")
def generator(peaked_model_path):
    return HFGenerator(str(peaked_model_path), torch_dtype="float64")


@pytest.fixture(scope="module")
def prompts(generator):
    return [
        generator.tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], add_generation_prompt=True, tokenize=True, return_dict=False
        )
        for q in QUESTIONS
    ]


class TestHFGenerator:
    def test_batched_rows_equal_one_at_a_time(self, generator, prompts):
        alone = [generator.generate(p, 10, []) for p in prompts]
        assert len({tuple(a.token_ids) for a in alone}) == len(prompts)  # rows are distinguishable
        together = generator.generate_batch(prompts, 10, [])
        for solo, batched in zip(alone, together, strict=True):
            assert batched.token_ids == solo.token_ids and batched.finish_reason == solo.finish_reason
            got, expected = (torch.tensor(r.logprobs, dtype=torch.float64) for r in (batched, solo))
            assert torch.allclose(got, expected, rtol=0, atol=EXACT)

    def test_finished_rows_cost_no_more_decode_steps(self, generator, prompts):
        generator.prefix_cache.clear()  # one prefill for all rows (no KV left by the other tests)
        limits = [1, 2, 3, 10, 0]
        out = generator.generate_batch(prompts, limits, [])
        assert [len(r.token_ids) for r in out] == limits
        assert all(r.finish_reason == "length" for r in out)
        # the prefill gives every row its first token; then rows of 2, 3 and 10 tokens need 1, 2 and
        # 9 decode steps: 12 row-steps, not 4 rows x 9 steps as a whole-batch decode would cost
        stats = generator.last_decode_stats
        assert (stats["forward_passes"], stats["row_steps"]) == (10, 12), stats

    def test_stop_string_ends_only_its_row(self, generator, prompts):
        free = generator.generate_batch(prompts[:2], 10, [])
        stop = generator.tokenizer.decode(free[0].token_ids[2:3])
        assert stop.strip() and stop not in generator.tokenizer.decode(free[0].token_ids[:2])
        assert stop not in free[1].text
        cut = generator.generate_batch(prompts[:2], 10, [stop])
        assert cut[0].finish_reason == "stop" and cut[0].token_ids == free[0].token_ids[:3]
        assert cut[0].text.endswith(stop)
        assert cut[1].token_ids == free[1].token_ids and cut[1].finish_reason == free[1].finish_reason

    def test_more_prompts_than_the_batch_refill_it(self, peaked_model_path, generator, prompts):
        small = HFGenerator(str(peaked_model_path), max_batch_size=2, torch_dtype="float64")
        limits = [3, 5, 2, 4, 6]
        refilled = small.generate_batch(prompts, limits, [])
        reference = generator.generate_batch(prompts, limits, [])
        assert [r.token_ids for r in refilled] == [r.token_ids for r in reference]
        # never more than 2 rows per step: at least sum(limits) / 2 forward passes
        assert small.last_decode_stats["forward_passes"] >= sum(limits) / 2

    def test_batch_size_follows_available_memory(self, generator):
        per_token = kv_bytes_per_token(generator.model)
        config = generator.model.config
        # head_dim 16, 8 bytes per float64 element
        assert per_token == 2 * config.num_hidden_layers * config.num_key_value_heads * 16 * 8
        gib = 1 << 30
        small = batch_size_for_memory(generator.model, 1000, available_bytes=gib)
        large = batch_size_for_memory(generator.model, 1000, available_bytes=16 * gib)
        assert 1 <= small < large and large == pytest.approx(16 * small, rel=0.01)
        assert batch_size_for_memory(generator.model, 10**9, available_bytes=gib) == 1
        assert 1 <= generator.batch_size_for(1000) <= HFGenerator.MAX_AUTO_BATCH

    def test_seeded_sampling_is_private_and_reproducible(self, peaked_model_path, prompts):
        """A seed makes sampling reproducible without reading or moving torch's global RNG (issue 21:
        a test's tokens depended on what ran before it through that RNG)."""

        def sample() -> list[list[int]]:
            sampler = HFGenerator(str(peaked_model_path), temperature=1.0, seed=7, torch_dtype="float64")
            return [r.token_ids for r in sampler.generate_batch(prompts[:3], 12, [])]

        torch.manual_seed(1)
        before = torch.random.get_rng_state()
        first = sample()
        assert torch.equal(torch.random.get_rng_state(), before)
        torch.manual_seed(999)  # another global state: same tokens
        assert sample() == first

    def test_rejects_a_zero_batch_size(self, peaked_model_path):
        with pytest.raises(ValueError, match="max_batch_size must be >= 1"):
            HFGenerator(str(peaked_model_path), max_batch_size=0)
