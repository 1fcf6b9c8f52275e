"""BoundedDynamicSampling: at most ``max_gen_batches`` generation batches per step, none generated twice.

The fake buffer follows verl 0.9.1's sync replay buffer protocol as the wrapper sees it: the trainer has
dispatched the step's first batch; finished groups whose metric is uniform are evicted while
``filter_groups_metric`` is set, and their replacements are requested through ``refill_fn``.
"""

from __future__ import annotations

import pytest

from masksearch.recipes.dynamic_sampling import BoundedDynamicSampling, DynamicSamplingExhausted


class FakeBuffer:
    def __init__(self, uniform: list[bool]):
        self.filter_groups_metric = "acc"
        self.refill_fn = self._dispatch
        self._outcomes = list(uniform)  # per generated group, in dispatch order: all rollouts same acc?
        self.generated = 0
        self._in_flight: list[bool] = []

    def _dispatch(self, count: int) -> None:
        for _ in range(count):
            self._in_flight.append(
                self._outcomes[self.generated] if self.generated < len(self._outcomes) else True
            )
            self.generated += 1

    def sample(self, global_steps: int, partition_id: str, batch_size: int):
        self._dispatch(batch_size)  # the step's first batch, sent by the trainer
        kept: list[bool] = []
        while len(kept) < batch_size:
            finished, self._in_flight = self._in_flight, []
            filtering = self.filter_groups_metric is not None and partition_id != "val"
            evicted = [u for u in finished if u and filtering]
            kept += [u for u in finished if not (u and filtering)]
            if evicted and len(kept) < batch_size:
                self.refill_fn(len(evicted))
        return kept[:batch_size], {"training/filter_groups/evicted_samples": 0}


def _sampler(buffer, max_gen_batches, on_exhausted="continue"):
    return BoundedDynamicSampling(
        buffer, max_gen_batches=max_gen_batches, train_batch_size=2, on_exhausted=on_exhausted
    )


def test_one_batch_budget_trains_on_that_batch_without_generating_another():
    buffer = FakeBuffer(uniform=[True, True, True, True])
    batch, metrics = _sampler(buffer, 1).sample(1, "train", 2)
    assert buffer.generated == 2  # was 4: both groups evicted, then two fresh ones kept unfiltered
    assert batch == [True, True]
    assert metrics["training/dynamic_sampling/exhausted"] == 1.0
    assert metrics["training/dynamic_sampling/refilled_prompts"] == 0.0
    assert buffer.filter_groups_metric == "acc"  # restored for the next step


def test_last_allowed_batch_is_kept_as_it_comes():
    buffer = FakeBuffer(uniform=[True, True, True, True, False, False])
    sampler = _sampler(buffer, 2)
    batch, metrics = sampler.sample(1, "train", 2)
    assert buffer.generated == 4  # batch 1 filtered out, batch 2 (the last allowed) kept unfiltered
    assert batch == [True, True]
    assert metrics["training/dynamic_sampling/exhausted"] == 1.0
    assert metrics["training/dynamic_sampling/refilled_prompts"] == 2.0
    assert sampler.exhausted_steps == 1


def test_groups_that_pass_need_no_refill_and_do_not_exhaust():
    buffer = FakeBuffer(uniform=[False, False])
    batch, metrics = _sampler(buffer, 3).sample(1, "train", 2)
    assert buffer.generated == 2 and batch == [False, False]
    assert metrics["training/dynamic_sampling/exhausted"] == 0.0


def test_filtering_continues_while_budget_is_left():
    buffer = FakeBuffer(uniform=[True, False, False, True])
    batch, metrics = _sampler(buffer, 3).sample(1, "train", 2)
    # batch 1: one group evicted, one refill of 1 prompt (budget 4 left) that passes
    assert buffer.generated == 3 and batch == [False, False]
    assert metrics["training/dynamic_sampling/exhausted"] == 0.0


def test_error_mode_filters_the_last_batch_and_raises_past_the_budget():
    buffer = FakeBuffer(uniform=[True, True])
    with pytest.raises(DynamicSamplingExhausted, match="max_gen_batches"):
        _sampler(buffer, 1, on_exhausted="error").sample(1, "train", 2)
    assert buffer.filter_groups_metric == "acc"


def test_validation_is_never_filtered():
    buffer = FakeBuffer(uniform=[True, True])
    batch, metrics = _sampler(buffer, 1).sample(1, "val", 2)
    assert batch == [True, True] and buffer.generated == 2
    assert "training/dynamic_sampling/exhausted" not in metrics
