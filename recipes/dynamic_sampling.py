"""DAPO dynamic sampling that never stalls and never regenerates what it then trains on unfiltered.

verl 0.9.1's sync replay buffer drops every group whose filter metric (``acc``) is the same for all of
its rollouts and refills with new prompts until the batch is full. When no group can pass — a policy
that fails every prompt, early in training — it regenerates forever (``filter_groups.max_num_gen_batches``
is ignored by the V1 buffer). ``BoundedDynamicSampling`` wraps that buffer and allows at most
``max_gen_batches`` generation batches per step: batches 1 .. ``max_gen_batches - 1`` are filtered, and
once the last allowed batch has been dispatched filtering is off for the rest of the step, so that batch
(and whatever else is still in flight) is trained on as it comes. It is not generated, evicted and
generated again: before issue 14 the last batch was filtered too, its evicted groups were replaced by a
fresh, unfiltered batch, and a ``max_gen_batches=1`` step generated twice the rollouts it trained on.
A step whose budget was spent this way logs a warning and counts it
(``training/dynamic_sampling/exhausted``). ``on_exhausted=error`` filters every batch, the last one
too, and raises a clear error when a refill beyond the budget is needed.
With ``max_gen_batches=1`` there is nothing to refill from: each step trains on its one batch unfiltered
(said once at start-up, counted as exhausted every step).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

ON_EXHAUSTED = ("continue", "error")
METRIC_PREFIX = "training/dynamic_sampling"


class DynamicSamplingExhausted(RuntimeError):
    """Raised with ``on_exhausted=error`` when no batch could be filled within the budget."""


@dataclass(frozen=True)
class DynamicSamplingSettings:
    """``masksearch.dynamic_sampling`` (see the module docstring).

    Attributes:
        max_gen_batches: generation batches per step; the last one is not filtered.
        on_exhausted: ``continue`` (train on unfiltered groups, logged and counted) or ``error``.
    """

    max_gen_batches: int = 4
    on_exhausted: str = "continue"

    def __post_init__(self) -> None:
        if self.on_exhausted not in ON_EXHAUSTED:
            raise ValueError(
                f"masksearch.dynamic_sampling.on_exhausted must be one of {ON_EXHAUSTED}, got {self.on_exhausted!r}"
            )
        if self.max_gen_batches < 1:
            raise ValueError("masksearch.dynamic_sampling.max_gen_batches must be >= 1")


class BoundedDynamicSampling:
    """Delegates to verl's replay buffer; bounds the prompts it may refill within one ``sample`` call."""

    def __init__(
        self, buffer: Any, *, max_gen_batches: int, train_batch_size: int, on_exhausted: str = "continue"
    ):
        DynamicSamplingSettings(max_gen_batches, on_exhausted)  # the same checks as the config's
        self._buffer = buffer
        self.max_gen_batches = int(max_gen_batches)
        self.train_batch_size = int(train_batch_size)
        self.on_exhausted = on_exhausted
        self.exhausted_steps = 0
        if self.max_gen_batches == 1 and on_exhausted == "continue":
            logger.warning(
                "masksearch.dynamic_sampling.max_gen_batches=1: each step trains on its one generation batch "
                "unfiltered (DAPO's group filter needs a second batch to refill from); counted as "
                "training/dynamic_sampling/exhausted"
            )

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

        def stop_filtering(reason: str) -> None:
            state["exhausted"] = True
            self.exhausted_steps += 1
            message = (
                f"step {global_steps}: dynamic sampling found no full batch of groups with varying "
                f"'{metric}' {reason}"
            )
            if self.on_exhausted == "error":
                raise DynamicSamplingExhausted(
                    message
                    + "; raise masksearch.dynamic_sampling.max_gen_batches or use on_exhausted=continue"
                )
            if self.max_gen_batches > 1:
                logger.warning("%s; the last batch is trained on unfiltered", message)
            buffer.filter_groups_metric = (
                None  # verl's buffer stops evicting; in-flight groups fill the batch
            )

        def bounded_refill(count: int):
            if not state["exhausted"] and state["refilled"] + count > budget:
                stop_filtering(f"within {self.max_gen_batches} generation batches")
            state["refilled"] += count
            result = original_refill(count)
            if self.on_exhausted == "continue" and not state["exhausted"] and state["refilled"] >= budget:
                # the last allowed batch is in flight: keep it as it comes instead of evicting its
                # uniform groups and generating their replacements
                stop_filtering(f"before its last allowed generation batch ({self.max_gen_batches})")
            return result

        if budget <= 0 and self.on_exhausted == "continue":
            stop_filtering("with max_gen_batches=1 (no batch to refill from)")
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
