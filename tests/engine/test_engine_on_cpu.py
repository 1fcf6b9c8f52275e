"""The generation engine itself: futures from any thread, per-row generators, bad rows refused at submit.

Its batching numerics (a batched row equals the row alone, to 1e-9 in float64) are tested through its
adapters: ``tests/backends/test_hf_rollout_on_cpu.py`` and ``tests/env/test_hf_generator_on_cpu.py``.
"""

from __future__ import annotations

import threading

import pytest
import torch

from masksearch.engine.engine import GenerationEngine, load_causal_lm
from masksearch.engine.hf_decode import RowSpec


@pytest.fixture(scope="module")
def engine(peaked_model_path):
    model, tokenizer = load_causal_lm(str(peaked_model_path), dtype=torch.float64)
    return GenerationEngine(model, tokenizer, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def prompts(engine):
    return [
        engine.tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], add_generation_prompt=True, tokenize=True, return_dict=False
        )
        for q in ("Who wrote Hamlet?", "hi", "Name a colour.")
    ]


def _sampled(prompt, seed):
    return RowSpec(prompt, 8, temperature=1.0, generator=torch.Generator().manual_seed(seed))


class TestEngine:
    def test_a_row_with_its_own_generator_samples_the_same_alone_or_batched(self, engine, prompts):
        alone = engine.submit(_sampled(prompts[0], 5)).result(timeout=60)
        # batched with rows drawing from the engine's generator and from another seed
        futures = engine.submit_many(
            [RowSpec(prompts[1], 8, temperature=1.0), _sampled(prompts[0], 5), _sampled(prompts[2], 6)]
        )
        together = [f.result(timeout=60) for f in futures]
        assert together[1].tokens == alone.tokens and together[1].log_probs == pytest.approx(
            alone.log_probs, abs=1e-9
        )

    def test_rows_submitted_from_several_threads_share_decode_steps(self, engine, prompts):
        engine.batch_sizes.clear()
        results: dict[int, list[int]] = {}
        barrier = threading.Barrier(len(prompts))

        def ask(i: int) -> None:
            barrier.wait()
            results[i] = engine.submit(RowSpec(prompts[i], 12)).result(timeout=60).tokens

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        alone = [engine.submit(RowSpec(p, 12)).result(timeout=60).tokens for p in prompts]
        assert [results[i] for i in range(len(prompts))] == alone  # greedy: no row got another's tokens
        assert max(engine.batch_sizes) > 1  # the threads' rows were decoded together

    def test_an_empty_prompt_is_refused_at_submit_not_in_the_batch(self, engine):
        with pytest.raises(ValueError, match="at least one token"):
            engine.submit(RowSpec([], 4))
        assert (
            engine.submit(RowSpec([], 0)).result(timeout=60).finish == "length"
        )  # no budget: nothing to run
