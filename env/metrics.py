"""Batch metrics of the search environment, from the per-sample ``extra_fields`` of the loop.

Every ``masksearch_agent`` sample carries ``num_searches``, ``num_turns``,
``num_invalid_actions``, ``num_retrieval_errors``, ``retrieval_latency_s``, ``hit_turn_budget``
and ``hit_length_budget`` in its ``extra_fields``. In verl's V1 trainer these travel into
TransferQueue as the ``extra_fields`` field of each sample; read them back with
``tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])``
and pass ``.pop("extra_fields").tolist()`` here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from masksearch.env.session import STATS_KEYS

__all__ = ["METRIC_NAMES", "env_batch_metrics"]

#: The metric names returned by :func:`env_batch_metrics` (when the batch has env samples).
METRIC_NAMES: tuple[str, ...] = (
    "env/searches_per_sample",
    "env/turns_per_sample",
    "env/invalid_actions_per_sample",
    "env/retrieval_errors",
    "env/retriever_requests",
    "env/retrieval_error_rate",
    "env/retrieval_latency_s",
    "env/hit_turn_budget_share",
    "env/hit_length_budget_share",
)


def _unwrap(value: Any) -> Any:
    """TransferQueue may hand back ``NonTensorData`` wrappers; numpy scalars become Python."""
    if type(value).__name__ == "NonTensorData":
        value = value.data
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, (list, str, Mapping)):
        try:
            return item()
        except (TypeError, ValueError):
            return value
    return value


def env_batch_metrics(extra_fields: Iterable[Mapping[str, Any] | None]) -> dict[str, float]:
    """Aggregate the env's per-sample counters over one batch.

    Samples without the env's keys (another agent loop, ``None``) are skipped; with none left the
    result is ``{}``.

    Formulas (sums over the N env samples of the batch)::

        env/searches_per_sample        = sum(num_searches) / N
        env/turns_per_sample           = sum(num_turns) / N              (model turns)
        env/invalid_actions_per_sample = sum(num_invalid_actions) / N
        env/retrieval_errors           = sum(num_retrieval_errors)       (a count, not a mean)
        env/retriever_requests         = sum(num_searches) - sum(num_cached_searches)
                                         (searches that reached the retriever: a count)
        env/retrieval_error_rate       = sum(num_retrieval_errors) / max(1, env/retriever_requests)
                                         (over the searches that reached the retriever; 0 when none
                                         did -- the trainer's error guard then skips the step, since
                                         a step without requests says nothing about the retriever)
        env/retrieval_latency_s        = sum(retrieval_latency_s) / max(1, sum(num_searches))  (per search)
        env/hit_turn_budget_share      = #(hit_turn_budget) / N
        env/hit_length_budget_share    = #(hit_length_budget) / N

    Args:
        extra_fields: one ``extra_fields`` mapping per sample.

    Returns:
        The metrics named in :data:`METRIC_NAMES`, as floats.

    >>> m = env_batch_metrics([
    ...     {"num_searches": 2, "num_turns": 3, "num_invalid_actions": 0, "num_retrieval_errors": 1,
    ...      "num_cached_searches": 1, "retrieval_latency_s": 0.5, "hit_turn_budget": False, "hit_length_budget": True},
    ...     {"num_searches": 0, "num_turns": 1, "num_invalid_actions": 1, "num_retrieval_errors": 0,
    ...      "num_cached_searches": 0, "retrieval_latency_s": 0.0, "hit_turn_budget": False, "hit_length_budget": False},
    ...     None,
    ... ])
    >>> m["env/searches_per_sample"], m["env/retrieval_errors"], m["env/retrieval_latency_s"]
    (1.0, 1.0, 0.25)
    >>> m["env/retrieval_error_rate"]  # 1 error of the 1 search that reached the retriever
    1.0
    >>> m["env/hit_length_budget_share"]
    0.5
    """
    rows = []
    for item in extra_fields:
        item = _unwrap(item)
        if isinstance(item, Mapping) and all(k in item for k in STATS_KEYS):
            rows.append({k: _unwrap(item[k]) for k in STATS_KEYS})
    if not rows:
        return {}
    n = float(len(rows))

    def total(key: str) -> float:
        return float(sum(float(r[key]) for r in rows))

    searches = total("num_searches")
    errors = total("num_retrieval_errors")
    requests = max(0.0, searches - total("num_cached_searches"))
    return {
        "env/searches_per_sample": searches / n,
        "env/turns_per_sample": total("num_turns") / n,
        "env/invalid_actions_per_sample": total("num_invalid_actions") / n,
        "env/retrieval_errors": errors,
        "env/retriever_requests": requests,
        "env/retrieval_error_rate": errors / max(1.0, requests),
        "env/retrieval_latency_s": total("retrieval_latency_s") / max(1.0, searches),
        "env/hit_turn_budget_share": sum(1.0 for r in rows if r["hit_turn_budget"]) / n,
        "env/hit_length_budget_share": sum(1.0 for r in rows if r["hit_length_budget"]) / n,
    }
