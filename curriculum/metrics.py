"""Per-batch curriculum metrics: how hard the prompts of a training batch were.

The trainer logs these next to verl's own metrics, so a curve shows the mask count rising as the
curriculum advances (and shows it flat when the sampler is not wired in), and the training reward
``acc`` per mask count (``reward/acc/mask_{k}``), so a curve shows which counts the policy learns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from masksearch.core.numbers import finite_number


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


#: Key prefix of :func:`acc_by_mask_num_metrics`: ``reward/acc/mask_{k}``.
ACC_BY_MASK_PREFIX = "reward/acc/mask_"


def mask_num_of(extra_info: Any) -> int | None:
    """``extra_info["mask_num"]`` as an int (``None`` when missing or not a whole number).

    ``extra_info`` may come wrapped (TransferQueue hands non-tensor fields back with ``.data``).

    >>> mask_num_of({"mask_num": 2}), mask_num_of({"index": 3}), mask_num_of(None), mask_num_of({"mask_num": "x"})
    (2, None, None, None)
    """
    extra_info = getattr(extra_info, "data", extra_info)
    if not isinstance(extra_info, Mapping):
        return None
    number = finite_number(extra_info.get("mask_num"))
    return int(number) if number is not None and number == int(number) else None


def acc_by_mask_num_metrics(mask_nums: Iterable[Any], accs: Iterable[Any]) -> dict[str, float]:
    """``reward/acc/mask_{k}``: the mean ``acc`` of the rollouts whose prompt has ``mask_num`` k.

    One key per mask count present in the batch (a count with no rollout this step has no key).

    Args:
        mask_nums: the prompt's mask count of each rollout (``None`` where unknown).
        accs: each rollout's reward ``acc``, aligned with ``mask_nums`` (``None`` where unknown).

    Returns:
        ``{"reward/acc/mask_{k}": mean acc}``, sorted by k. A rollout whose mask count or acc is
        missing, non-numeric or not finite is skipped, so an odd row never fails a training step;
        lists of different lengths cannot be paired and give ``{}``.

    >>> acc_by_mask_num_metrics([1, 1, 2, None, 3], [1.0, 0.0, 1.0, 1.0, "?"])
    {'reward/acc/mask_1': 0.5, 'reward/acc/mask_2': 1.0}
    """
    mask_nums, accs = list(mask_nums), list(accs)
    if len(mask_nums) != len(accs):
        return {}
    sums: dict[int, float] = {}
    counts: Counter[int] = Counter()
    for mask_num, acc in zip(mask_nums, accs, strict=True):
        k, value = finite_number(mask_num), finite_number(acc)
        if k is None or value is None or k != int(k):
            continue
        sums[int(k)] = sums.get(int(k), 0.0) + value
        counts[int(k)] += 1
    return {f"{ACC_BY_MASK_PREFIX}{k}": sums[k] / counts[k] for k in sorted(sums)}
