"""Per-batch curriculum metrics: how hard the prompts of a training batch were.

The trainer logs these next to verl's own metrics, so a curve shows the mask count rising as the
curriculum advances (and shows it flat when the sampler is not wired in).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any


def mask_num_batch_metrics(mask_nums: Iterable[int], levels: Iterable[int] = ()) -> dict[str, float]:
    """``curriculum/mask_num_mean`` and ``curriculum/mask_num_share_{k}`` for a batch.

    Args:
        mask_nums: ``extra_info.mask_num`` of each prompt in the batch.
        levels: counts that always get a share key (``0.0`` when absent), so logged series keep
            the same keys from the first step; e.g. ``range(5)``.

    Returns:
        An empty dict for an empty batch; otherwise the mean and one share per count.

    >>> mask_num_batch_metrics([1, 1, 2, 4])
    {'curriculum/mask_num_mean': 2.0, 'curriculum/mask_num_share_1': 0.5, 'curriculum/mask_num_share_2': 0.25, 'curriculum/mask_num_share_4': 0.25}
    """
    values = [int(v) for v in mask_nums]
    if not values:
        return {}
    counts = Counter(values)
    out = {"curriculum/mask_num_mean": sum(values) / len(values)}
    for k in sorted(set(counts) | {int(level) for level in levels}):
        out[f"curriculum/mask_num_share_{k}"] = counts.get(k, 0) / len(values)
    return out


def mask_nums_from_extra_info(extra_infos: Iterable[Mapping[str, Any] | None]) -> list[int]:
    """``mask_num`` of each ``extra_info`` dict of a batch (``non_tensor_batch["extra_info"]``).

    Rows without ``mask_num`` are skipped rather than failing a training step over a metric.
    """
    return [int(info["mask_num"]) for info in extra_infos if info and info.get("mask_num") is not None]
