"""A run whose rollouts stop moving fails with one line instead of waiting forever.

verl 0.9.1's V1 replay buffer waits for finished groups in a loop (``_wait_for_next_poll``) and has
no deadline. When Ray kills a rollout server or an agent-loop worker (its memory monitor does so
when the machine runs out of memory), the requests that worker held never finish and the buffer
logs ``pending: 0, running: 100, finished: 0`` every minute, forever (measured: a ``make demo`` run
beside the test suite on a 23 GiB machine). :class:`StallGuard` wraps that one method of the buffer
instance: when the counts of a partition's pending / running / finished / failed trajectories have
not changed for ``masksearch.sampler.stall_timeout_s`` while trajectories are running, it raises
:class:`RolloutStalled`, which the recipe's entry prints as one line (exit 3, ``run_result.json``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["RolloutStalled", "StallGuard"]

_STATES = ("pending_keys", "running_keys", "finished_keys", "failure_keys")


class RolloutStalled(RuntimeError):
    """No trajectory changed state for the configured time while some were running."""


class StallGuard:
    """Installed on a verl replay buffer by :meth:`install`; ``timeout_s`` 0 leaves the buffer alone."""

    def __init__(self, buffer: Any, timeout_s: float, clock: Callable[[], float] = time.monotonic):
        self.buffer = buffer
        self.timeout_s = float(timeout_s)
        self.clock = clock
        self._wait: Callable[[str, float], float] | None = None
        self._seen: dict[str, tuple[tuple[int, ...], float]] = {}

    def install(self) -> Any:
        names = ("_wait_for_next_poll", *_STATES)
        if self.timeout_s > 0 and all(hasattr(self.buffer, name) for name in names):
            self._wait = self.buffer._wait_for_next_poll
            self.buffer._wait_for_next_poll = self.wait_for_next_poll
        return self.buffer

    def counts(self, partition_id: str) -> tuple[int, ...]:
        return tuple(len(getattr(self.buffer, name)[partition_id]) for name in _STATES)

    def wait_for_next_poll(self, partition_id: str, last_debug_time: float) -> float:
        """verl's wait, then the check: the same signature and return value as the method it wraps."""
        assert self._wait is not None, "install() first"
        result = self._wait(partition_id, last_debug_time)
        counts, now = self.counts(partition_id), self.clock()
        seen, since = self._seen.get(partition_id, (None, now))
        if counts != seen:
            self._seen[partition_id] = (counts, now)
        elif counts[1] > 0 and now - since > self.timeout_s:
            pending, running, finished, failed = counts
            raise RolloutStalled(
                f"masksearch: error: no {partition_id} rollout changed state for {now - since:.0f} s "
                f"(pending {pending}, running {running}, finished {finished}, failed {failed}): a rollout "
                "worker has probably died (Ray kills workers when the machine runs out of memory; see "
                "its raylet log); if generation is really this slow, raise masksearch.sampler.stall_timeout_s"
            )
        return result
