"""DAPO dynamic sampling that never stalls: a bound on regeneration per step.

verl 0.9.1's sync replay buffer drops every group whose filter metric (``acc``) is the same for all of
its rollouts and refills with new prompts until the batch is full. When no group can pass — a policy
that fails every prompt, early in training — it regenerates forever (``filter_groups.max_num_gen_batches``
is ignored by the V1 buffer). ``BoundedDynamicSampling`` wraps that buffer: after
``max_gen_batches`` generation batches in one step it stops filtering for the rest of the step, so the
batch fills with the groups still being generated (they carry no advantage, but the step completes),
logs a warning and counts it (``training/dynamic_sampling/exhausted``). ``on_exhausted=error`` turns
that into a clear error instead.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

ON_EXHAUSTED = ("continue", "error")
METRIC_PREFIX = "training/dynamic_sampling"


class DynamicSamplingExhausted(RuntimeError):
    """Raised with ``on_exhausted=error`` when no batch could be filled within the budget."""


class BoundedDynamicSampling:
    """Delegates to verl's replay buffer; bounds the prompts it may refill within one ``sample`` call."""

    def __init__(
        self, buffer: Any, *, max_gen_batches: int, train_batch_size: int, on_exhausted: str = "continue"
    ):
        if on_exhausted not in ON_EXHAUSTED:
            raise ValueError(
                f"masksearch.dynamic_sampling.on_exhausted must be one of {ON_EXHAUSTED}, got {on_exhausted!r}"
            )
        if max_gen_batches < 1:
            raise ValueError("masksearch.dynamic_sampling.max_gen_batches must be >= 1")
        self._buffer = buffer
        self.max_gen_batches = int(max_gen_batches)
        self.train_batch_size = int(train_batch_size)
        self.on_exhausted = on_exhausted
        self.exhausted_steps = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._buffer, name)

    def sample(self, global_steps: int, partition_id: str, batch_size: int):
        buffer = self._buffer
        metric = getattr(buffer, "filter_groups_metric", None)
        if partition_id == "val" or metric is None:
            return buffer.sample(global_steps=global_steps, partition_id=partition_id, batch_size=batch_size)

        # the step's first batch is dispatched by the trainer; refills beyond this many prompts exhaust it
        budget = (self.max_gen_batches - 1) * self.train_batch_size
        original_refill = buffer.refill_fn
        state = {"refilled": 0, "exhausted": False}

        def bounded_refill(count: int):
            if not state["exhausted"] and state["refilled"] + count > budget:
                state["exhausted"] = True
                self.exhausted_steps += 1
                message = (
                    f"step {global_steps}: dynamic sampling found no full batch of groups with varying "
                    f"'{metric}' after {self.max_gen_batches} generation batches"
                )
                if self.on_exhausted == "error":
                    raise DynamicSamplingExhausted(
                        message
                        + "; raise masksearch.dynamic_sampling.max_gen_batches or use on_exhausted=continue"
                    )
                logger.warning("%s; training on unfiltered groups for this step", message)
                buffer.filter_groups_metric = (
                    None  # verl's buffer stops evicting; in-flight groups fill the batch
                )
            state["refilled"] += count
            return original_refill(count)

        buffer.refill_fn = bounded_refill
        try:
            batch, metrics = buffer.sample(
                global_steps=global_steps, partition_id=partition_id, batch_size=batch_size
            )
        finally:
            buffer.refill_fn = original_refill
            buffer.filter_groups_metric = metric
        metrics = dict(metrics)
        metrics[f"{METRIC_PREFIX}/refilled_prompts"] = float(state["refilled"])
        metrics[f"{METRIC_PREFIX}/exhausted"] = float(state["exhausted"])
        metrics[f"{METRIC_PREFIX}/exhausted_steps_total"] = float(self.exhausted_steps)
        return batch, metrics
