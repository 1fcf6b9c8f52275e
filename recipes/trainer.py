"""The ``masksearch`` V1 trainer mode: verl's sync PPO trainer plus what verl 0.9.1 does not log.

Selected with ``trainer.v1.trainer_mode=masksearch``; registered by our ``verl.plugins`` entry point
when verl imports its V1 trainers (see ``masksearch.recipes.plugin``).

Differences from ``PPOTrainerSync``, and nothing else:

* training-step metrics include the batch means of the reward function's extra keys
  (``reward/acc/mean``, ``reward/format_ok/mean``, ...) and of the search environment's per-sample
  counters (``env/...``). verl aggregates reward keys for validation only; on the training curves it
  logs ``critic/score/*``;
* the mask-count curriculum (``+masksearch.curriculum.strategy=staged|linear|mixed|balanced``): verl 0.9.1
  has no data-sampler hook, so ``_init_dataloader`` rebuilds the train dataloader with our sampler.
  Its position rides on verl's own dataloader checkpoint (``global_step_N/data.pt``);
* ``curriculum/mask_num_*`` metrics of the prompts drawn for each step, so the curriculum is visible;
* ``reward/acc/mask_{k}``: the training reward ``acc`` of the rollouts whose prompt has k masks;
* DAPO dynamic sampling bounded per step (``masksearch.dynamic_sampling``; see ``dynamic_sampling``);
* the replay buffer looks for finished groups every ``masksearch.sampler.poll_interval_s`` (0.25 s)
  instead of verl's fixed 2 s, which rounded every step's generation up to the next 2-s tick;
* the run stops with one line when no rollout changes state for ``masksearch.sampler.stall_timeout_s``
  (1800 s) while some are running (a rollout worker killed by Ray; verl's buffer would wait forever);
* the run stops when ``env/retrieval_error_rate`` stays above ``masksearch.env.max_retrieval_error_rate``
  (default 0.5) for ``masksearch.env.max_retrieval_error_steps`` (default 3) consecutive steps, with
  a message naming the retriever: a dead retriever must not train the policy on error text;
* the training-health watchdog (``masksearch.health``, :mod:`masksearch.recipes.health_guard`):
  ``health/*`` metrics every step, and ``warn``, ``stop`` or ``rollback`` when a rule trips;
* a resumed run keeps the steps verl's ``file`` logger wrote before the kill: that logger opens its
  file with ``"wb"``, so on resume the earlier file is set aside as ``<name>.part<k>`` first
  (:func:`masksearch.core.jsonl.read_jsonl_parts` reads the whole run back).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import transfer_queue as tq
from torchdata.stateful_dataloader import StatefulDataLoader
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils.dataset.rl_dataset import collate_fn

from masksearch.core.jsonl import discard_parts, set_aside
from masksearch.core.numbers import finite_number
from masksearch.curriculum.metrics import acc_by_mask_num_metrics, mask_num_batch_metrics, mask_num_of
from masksearch.curriculum.sampler import build_curriculum_sampler, mask_nums_from_dataset
from masksearch.env.metrics import env_batch_metrics
from masksearch.recipes.dynamic_sampling import BoundedDynamicSampling
from masksearch.recipes.health_guard import HealthGuard
from masksearch.recipes.settings import settings_of
from masksearch.recipes.stall_guard import StallGuard

logger = logging.getLogger(__name__)

TRAINER_MODE = "masksearch"
RETRIEVAL_ERROR_METRIC = "env/retrieval_error_rate"
RETRIEVER_REQUESTS_METRIC = "env/retriever_requests"


class RetrievalErrorAbort(RuntimeError):
    """Too many retrieval errors for too many consecutive steps; the message names the retriever."""


class RetrievalErrorGuard:
    """Counts consecutive steps whose retrieval error rate is above ``max_rate``; raises at ``max_steps``.

    ``max_rate`` 1.0 switches it off (a rate is never above 1). A step whose searches all came from
    the client's cache, or that made no search at all, says nothing about the retriever: it neither
    counts nor resets (otherwise a policy that stops searching, or repeats a cached query, would
    hide a dead server).

    >>> guard = RetrievalErrorGuard(0.5, 2, "index /idx")
    >>> guard.update({"env/retrieval_error_rate": 0.9}); guard.bad_steps
    1
    >>> guard.update({"env/retrieval_error_rate": 0.0, "env/retriever_requests": 0}); guard.bad_steps
    1
    >>> guard.update({"env/retrieval_error_rate": 0.1}); guard.bad_steps  # a good step resets it
    0
    """

    def __init__(self, max_rate: float, max_steps: int, retriever: str):
        self.max_rate = float(max_rate)
        self.max_steps = int(max_steps)
        self.retriever = retriever
        self.bad_steps = 0

    def update(self, metrics: Mapping[str, Any]) -> None:
        rate = finite_number(metrics.get(RETRIEVAL_ERROR_METRIC))
        if rate is None:
            return  # no env samples this step
        if finite_number(metrics.get(RETRIEVER_REQUESTS_METRIC)) == 0.0:
            return  # no search reached the retriever this step
        self.bad_steps = self.bad_steps + 1 if rate > self.max_rate else 0
        if self.bad_steps >= self.max_steps:
            raise RetrievalErrorAbort(
                f"retrieval error rate above {self.max_rate:g} for {self.bad_steps} consecutive steps "
                f"(last {rate:.2f}) from the retriever {self.retriever}; check it is up and reachable "
                "(masksearch.env.max_retrieval_error_rate=1.0 disables this check)"
            )

    @classmethod
    def from_config(cls, config) -> RetrievalErrorGuard:
        from masksearch.core.urls import public_url
        from masksearch.env.config import SearchEnvConfig

        env = SearchEnvConfig.resolve(config)
        if env.retriever_index:
            where = f"index {env.retriever_index}"
        elif env.retriever_url:
            where = f"server {public_url(env.retriever_url)}"
        else:
            where = "(none configured)"
        return cls(env.max_retrieval_error_rate, env.max_retrieval_error_steps, where)


REWARD_METRIC_PREFIX = "reward"


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
            number = finite_number(value)
            if number is not None:
                sums[key] += number
                counts[key] += 1
    return {f"{REWARD_METRIC_PREFIX}/{key}/mean": sums[key] / counts[key] for key in sorted(sums)}


def rollout_accs(extra_fields: Iterable[Mapping[str, Any] | Any]) -> list[Any]:
    """Each rollout's ``reward_extra_info["acc"]`` (``None`` where it has none), aligned with the batch.

    >>> rollout_accs([{"reward_extra_info": {"acc": 1.0}}, {"reward_extra_info": {}}, None])
    [1.0, None, None]
    """
    accs = []
    for fields in extra_fields:
        fields = getattr(fields, "data", fields)
        info = fields.get("reward_extra_info") if isinstance(fields, Mapping) else None
        accs.append(info.get("acc") if isinstance(info, Mapping) else None)
    return accs


def _mask_nums_of(batch) -> list[int]:
    """``extra_info.mask_num`` of the rows of a gen batch (rows without one are skipped)."""
    try:
        infos = batch["extra_info"]
    except KeyError:
        return []
    infos = getattr(infos, "tolist", lambda: infos)()
    return [int(i["mask_num"]) for i in infos if isinstance(i, Mapping) and i.get("mask_num") is not None]


def file_logger_path(project_name: str, experiment_name: str) -> Path:
    """Where verl 0.9.1's ``FileLogger`` writes (``verl.utils.tracking``; pinned by a test)."""
    explicit = os.getenv("VERL_FILE_LOGGER_PATH")
    if explicit:
        return Path(explicit)
    root = os.path.expanduser(os.getenv("VERL_FILE_LOGGER_ROOT", "."))
    return Path(root) / project_name / f"{experiment_name}.jsonl"


def keep_file_logger_history(config, *, resumed: bool = True) -> Path | None:
    """Set aside the ``file`` logger's earlier file (a resumed run's first steps) before verl truncates it;
    for a run from scratch (``resumed=False``) drop the parts earlier runs kept, as verl starts the file over."""
    backends = config.trainer.get("logger") or []
    if isinstance(backends, str):
        backends = [backends]
    if "file" not in backends:
        return None
    path = file_logger_path(config.trainer.project_name, config.trainer.experiment_name)
    if not resumed:
        discard_parts(path)
        return None
    kept = set_aside(path)
    if kept is not None:
        logger.warning(
            "metrics of the earlier attempt kept in %s (verl's file logger starts %s over)", kept, path
        )
    return kept


@register_trainer(TRAINER_MODE)
class MaskSearchTrainer(PPOTrainerSync):
    """verl's sync trainer plus the curriculum sampler and the metrics verl does not log for training."""

    curriculum_sampler = None

    def __init__(self, config):
        super().__init__(config)
        HealthGuard.of(self)  # a bad masksearch.* key fails now (loads the settings), not after a step

    def fit(self, agent_loop_manager):
        # verl loaded the checkpoint before fit (global_steps > 0: resumed); its Tracking, created in
        # fit, truncates the file logger's file
        keep_file_logger_history(self.config, resumed=getattr(self, "global_steps", 0) > 0)
        return super().fit(agent_loop_manager)

    def _load_checkpoint(self):
        super()._load_checkpoint()
        guard = HealthGuard.of(self)
        if guard is not None:  # the watchdog's state of the resumed step (and a rollback's weights)
            guard.after_load()

    def _build_replay_buffer(self):
        buffer = super()._build_replay_buffer()
        # verl's sync buffer checks for finished groups every `poll_interval` s (2.0, not configurable
        # there): a step's generation then ends on the next 2-s tick, ~1 s lost per step on average
        # (issue 14: `timing_s/gen` of the demo read 18.03, 18.03, 20.03 s)
        settings = settings_of(self)
        if hasattr(buffer, "poll_interval"):
            buffer.poll_interval = settings.sampler.poll_interval_s
        StallGuard(
            buffer, settings.sampler.stall_timeout_s
        ).install()  # a dead rollout worker: one line, not a hang
        if getattr(buffer, "filter_groups_metric", None) is None:
            return buffer
        return BoundedDynamicSampling(
            buffer,
            max_gen_batches=settings.dynamic_sampling.max_gen_batches,
            on_exhausted=settings.dynamic_sampling.on_exhausted,
            train_batch_size=int(self.config.data.train_batch_size),
        )

    def _init_dataloader(self):
        super()._init_dataloader()
        self._drawn_mask_nums: list[int] = []
        settings = settings_of(self).curriculum
        strategy = settings.strategy
        if strategy == "none":
            return
        if self.config.data.get("dataloader_num_workers", 0):
            logger.warning(
                "data.dataloader_num_workers>0 prefetches batches, so curriculum changes arrive late; use 0"
            )
        try:
            mask_nums = mask_nums_from_dataset(self.train_dataset)
        except ValueError as exc:
            raise ValueError(f"masksearch.curriculum.strategy={strategy}: {exc}") from None
        total_samples = settings.total_samples or self.total_training_steps * int(
            self.config.data.train_batch_size
        )
        seed = settings.seed if settings.seed is not None else int(self.config.data.get("seed", None) or 1)
        self.curriculum_sampler = build_curriculum_sampler(
            strategy,
            mask_nums,
            seed=seed,
            total_samples=total_samples,
            zero_mask_level=settings.zero_mask_level,
            width=settings.width,
        )
        old = self.train_dataloader
        self.train_dataloader = StatefulDataLoader(
            dataset=self.train_dataset,
            batch_size=old.batch_size,
            num_workers=old.num_workers,
            drop_last=old.drop_last,
            collate_fn=collate_fn,
            sampler=self.curriculum_sampler,
        )
        logger.info(
            "curriculum %s over %d samples (mask counts %s)", strategy, len(mask_nums), sorted(set(mask_nums))
        )

    def _fetch_one_gen_batch(self):
        batch = super()._fetch_one_gen_batch()
        self._drawn_mask_nums.extend(_mask_nums_of(batch))
        return batch

    def _batch_extra_fields(self, batch) -> list[Any]:
        non_padding = [not tag.get("is_padding", False) for tag in batch.tags]
        keys = [key for key, keep in zip(batch.keys, non_padding, strict=True) if keep]
        if not keys:
            return []
        data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
        return list(data["extra_fields"])

    def _batch_mask_nums(self, batch) -> list[int | None]:
        """``extra_info.mask_num`` of each rollout, aligned with ``_batch_extra_fields`` (same keys).

        verl stores the prompt's dataset fields (``extra_info`` among them) with every rollout. A
        batch without them gives ``[]``: the per-mask-count metrics are skipped, the step goes on.
        """
        keys = [
            key for key, tag in zip(batch.keys, batch.tags, strict=True) if not tag.get("is_padding", False)
        ]
        if not keys:
            return []
        try:
            data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=["extra_info"])
            infos = list(data["extra_info"])
        except Exception as exc:  # a metric never fails a step
            logger.debug("no extra_info in the batch (%s); reward/acc/mask_* not logged", exc)
            return []
        return [mask_num_of(info) for info in infos]

    def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
        super()._compute_metrics(batch, metrics, timing_raw, global_steps=global_steps, epoch=epoch)
        extra_fields = self._batch_extra_fields(batch)
        metrics.update(reward_extra_metrics(extra_fields))
        metrics.update(env_batch_metrics(extra_fields))
        if getattr(self, "_retrieval_guard", None) is None:
            self._retrieval_guard = RetrievalErrorGuard.from_config(self.config)
        self._retrieval_guard.update(metrics)
        metrics.update(mask_num_batch_metrics(self._drawn_mask_nums))
        metrics.update(acc_by_mask_num_metrics(self._batch_mask_nums(batch), rollout_accs(extra_fields)))
        self._drawn_mask_nums = []
        if self.curriculum_sampler is not None:
            metrics.update(self.curriculum_sampler.metrics())
        guard = HealthGuard.of(self)
        if guard is not None:  # masksearch.health: health/* metrics, then warn, stop or roll back
            guard.after_step(batch, metrics, global_steps)
