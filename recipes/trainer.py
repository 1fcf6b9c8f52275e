"""The ``masksearch`` V1 trainer mode: verl's sync PPO trainer plus what verl 0.9.1 does not log.

Selected with ``trainer.v1.trainer_mode=masksearch``; registered by our ``verl.plugins`` entry point
when verl imports its V1 trainers (see ``masksearch.backends.plugin``).

Only difference from ``PPOTrainerSync`` so far: training-step metrics include the batch means of
the reward function's extra keys (``reward/acc/mean``, ``reward/format_ok/mean``, ...). verl
aggregates those keys for validation only; on the training curves it logs ``critic/score/*``.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import transfer_queue as tq
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

logger = logging.getLogger(__name__)

TRAINER_MODE = "masksearch"
REWARD_METRIC_PREFIX = "reward"


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def reward_extra_metrics(extra_fields: Iterable[Mapping[str, Any] | Any]) -> dict[str, float]:
    """Mean of every numeric key of ``extra_fields[i]["reward_extra_info"]`` over the batch.

    Non-numeric values (e.g. the extracted answer string) are skipped; a key is averaged over the
    samples that have a numeric value for it.

    >>> reward_extra_metrics([{"reward_extra_info": {"acc": 1.0, "pred": "x"}},
    ...                       {"reward_extra_info": {"acc": 0.0}}])
    {'reward/acc/mean': 0.5}
    """
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for fields in extra_fields:
        fields = getattr(fields, "data", fields)
        info = fields.get("reward_extra_info") if isinstance(fields, Mapping) else None
        if not isinstance(info, Mapping):
            continue
        for key, value in info.items():
            number = _as_number(value)
            if number is not None:
                sums[key] += number
                counts[key] += 1
    return {f"{REWARD_METRIC_PREFIX}/{key}/mean": sums[key] / counts[key] for key in sorted(sums)}


@register_trainer(TRAINER_MODE)
class MaskSearchTrainer(PPOTrainerSync):
    """verl's sync trainer; adds step metrics that verl computes but does not log for training."""

    def _batch_extra_fields(self, batch) -> list[Any]:
        non_padding = [not tag.get("is_padding", False) for tag in batch.tags]
        keys = [key for key, keep in zip(batch.keys, non_padding, strict=True) if keep]
        if not keys:
            return []
        data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
        return list(data["extra_fields"])

    def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
        super()._compute_metrics(batch, metrics, timing_raw, global_steps=global_steps, epoch=epoch)
        extra_fields = self._batch_extra_fields(batch)
        metrics.update(reward_extra_metrics(extra_fields))
