"""Mask-count curriculum: a resumable ``Sampler[int]`` that orders RAMP rows from easy to hard.

MaskSearch trains on 1-mask samples before 4-mask ones. verl 0.9.1 has no sampler hook, so the
trainer builds its ``StatefulDataLoader`` with this sampler instead of ``create_rl_sampler``'s
(``build_curriculum_sampler`` returns ``None`` for ``strategy="none"`` to keep verl's default).

Strategies (a *level* is a distinct mask count present in the data, sorted ascending):

- ``staged``: the span yields a block of level 1, then a block of level 2, ...; each level
  shuffled, each block as large as its level's share of the data.
- ``linear``: a difficulty ceiling rises with training progress ``p``: at position ``t`` only
  levels with rank ``<= floor(p * n_levels)`` are eligible, drawn in proportion to what is left
  of them. When the eligible levels are used up, the easiest remaining level is taken.
- ``mixed``: a soft ``staged``. Each row gets the key ``c + width * z`` (``c``: the middle of its
  level's block in the staged order, as a fraction of the span; ``z`` standard normal) and the
  span is sorted by key. The chance of each mask count at span fraction ``f`` is then
  proportional to ``n_level * density((f - c_level) / width)``: it shifts from easy to hard over
  the span, every level keeps its share of it, and the mean mask count rises in expectation.
  ``width=0`` is ``staged``; a large width is a plain shuffle.

The *span* is the training the run will do: ``total_samples`` (the trainer passes
``total_training_steps x train_batch_size``), so a 12-step run and a 100-step run both go from 1 to
4 masks even when they draw far less than an epoch (issue 22: ``staged`` over a whole epoch of
~1,900 RAMP rows kept a 4-step run on 1-mask rows). A run longer than one epoch has the shape
every epoch (the span of an epoch is the epoch, or what is left of the run if that is shorter).
With ``total_samples=None`` the span is the epoch. When the span is shorter than the epoch, each
level contributes its share of the span (largest remainder), the span comes first in the
strategy's shape, and the rest of the epoch follows hardest level first: a run that draws more
than planned (dynamic sampling regenerates filtered groups) stays at the top of the curriculum.

Every epoch is a permutation of the dataset (each index exactly once), like verl's default
sampler, so epochs, ``drop_last`` and ``len(dataloader)`` keep their meaning. For ``linear``,
progress ``p`` is ``samples drawn so far / total_samples`` across epochs (capped at 1); with
``total_samples=None`` it restarts each epoch.

Resuming: an epoch's order is a pure function of ``(seed, epoch, samples drawn before it)``, so
``state_dict()`` only records those counters plus a fingerprint of the data. torchdata's
``StatefulDataLoader`` stores ``sampler.state_dict()`` (through its ``BatchSampler``) in
``dataloader.state_dict()``, which verl saves to ``global_step_N/data.pt``; on load it calls
``sampler.load_state_dict`` and then ``iter(sampler)``, which continues at the saved position.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)
logger.setLevel(os.environ.get("MASKSEARCH_LOGGING_LEVEL", "WARNING"))

STRATEGIES = ("staged", "linear", "mixed")
_STATE_VERSION = 2  # 2: staged/mixed span the run (total_samples), not the epoch


class CurriculumSampler(Sampler[int]):
    """Yield dataset indices ordered by difficulty (``mask_num``); seedable and resumable.

    Args:
        mask_nums: ``extra_info.mask_num`` of every dataset row, in dataset order.
        strategy: ``"staged"``, ``"linear"`` or ``"mixed"``.
        seed: seeds every shuffle; the same seed gives the same order.
        total_samples: samples the run will draw (the trainer passes steps x batch size): the span
            over which ``staged``/``mixed`` go from easy to hard, the ``linear`` ceiling rises and
            ``curriculum/progress`` goes from 0 to 1. ``None``: every epoch is one span.
        zero_mask_level: level used for rows with ``mask_num == 0`` (QA rows). ``None`` keeps 0,
            the easiest level; e.g. ``4`` treats QA like the hardest RAMP rows.
        width: spread of the ``mixed`` keys, as a fraction of an epoch (``0`` is ``staged``).
    """

    def __init__(
        self,
        mask_nums: Sequence[int],
        *,
        strategy: str = "staged",
        seed: int = 0,
        total_samples: int | None = None,
        zero_mask_level: int | None = None,
        width: float = 0.2,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"Unknown curriculum strategy '{strategy}'; known: {[*STRATEGIES, 'none']}")
        if len(mask_nums) == 0:
            raise ValueError("the curriculum sampler needs a non-empty dataset")
        if total_samples is not None and total_samples <= 0:
            raise ValueError(f"total_samples must be positive or None, got {total_samples}")
        if width < 0:
            raise ValueError(f"width must be >= 0, got {width}")
        levels = np.asarray(mask_nums, dtype=np.int64)
        if levels.ndim != 1 or (levels < 0).any():
            raise ValueError("mask_nums must be a flat sequence of non-negative integers")
        if zero_mask_level is not None:
            levels = np.where(levels == 0, zero_mask_level, levels)
        self.strategy = strategy
        self.seed = int(seed)
        self.total_samples = total_samples
        self.zero_mask_level = zero_mask_level
        self.width = float(width)
        self.levels = levels
        self.level_values = sorted({int(v) for v in levels})
        self._rank = np.searchsorted(np.asarray(self.level_values), levels)
        self._digest = hashlib.sha256(levels.tobytes()).hexdigest()[:16]
        # Position: ``_yielded`` indices of epoch ``_epoch`` were drawn; ``_consumed_before``
        # indices were drawn in earlier epochs.
        self._epoch = 0
        self._yielded = 0
        self._consumed_before = 0
        self._resume_pending = False
        self._generation = 0
        self._order_cache: tuple[tuple[int, int], list[int]] | None = None

    def __len__(self) -> int:
        return len(self.levels)

    # ----------------------------------------------------------------------------------------
    # Progress and metrics
    # ----------------------------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def samples_drawn(self) -> int:
        """Indices yielded since the start of training (all epochs)."""
        return self._consumed_before + self._yielded

    def progress_at(self, consumed_before: int, position: int) -> float:
        """Curriculum progress in ``[0, 1]`` for ``position`` in an epoch after ``consumed_before``."""
        if self.total_samples is None:
            return min(1.0, position / len(self))
        return min(1.0, (consumed_before + position) / self.total_samples)

    @property
    def progress(self) -> float:
        return self.progress_at(self._consumed_before, self._yielded)

    def metrics(self) -> dict[str, float]:
        """Scalars for the trainer's logger (``curriculum/progress``, ``/epoch``, ``/ceiling``)."""
        out = {"curriculum/progress": self.progress, "curriculum/epoch": float(self._epoch)}
        if self.strategy == "linear":
            out["curriculum/ceiling"] = float(self.level_values[self._ceiling_rank(self.progress)])
        return out

    def _ceiling_rank(self, p: float) -> int:
        return min(len(self.level_values) - 1, int(p * len(self.level_values)))

    # ----------------------------------------------------------------------------------------
    # Order of one epoch (pure in seed, epoch, consumed_before)
    # ----------------------------------------------------------------------------------------

    def epoch_order(self, epoch: int, consumed_before: int) -> list[int]:
        """The full index order of ``epoch``, given ``consumed_before`` earlier draws."""
        key = (epoch, consumed_before)
        if self._order_cache is not None and self._order_cache[0] == key:
            return self._order_cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        n_levels = len(self.level_values)
        queues = [rng.permutation(np.flatnonzero(self._rank == r)).tolist() for r in range(n_levels)]
        if self.strategy == "linear":
            order = self._linear(queues, rng.random(len(self)), consumed_before)
        else:
            quotas = self.span_quotas(consumed_before)
            in_span = [q[:k] for q, k in zip(queues, quotas, strict=True)]
            rest = [q[k:] for q, k in zip(queues, quotas, strict=True)]
            z = rng.standard_normal(len(self))
            order = self._shaped(in_span, z[: sum(quotas)])
            order += [i for q in reversed(rest) for i in q]  # past the span: hardest level first
        self._order_cache = (key, order)
        return order

    def span_quotas(self, consumed_before: int) -> list[int]:
        """Rows of each level in the span of the epoch that starts after ``consumed_before`` draws.

        The span is what is left of the run (``total_samples - consumed_before``, at least one
        row), capped at the epoch; each level gets its share of it by largest remainder, so the
        quotas sum to the span and never exceed a level's rows.
        """
        sizes = np.bincount(self._rank, minlength=len(self.level_values))
        span = len(self)
        if self.total_samples is not None:
            span = min(span, max(1, self.total_samples - consumed_before))
        exact = sizes * span / len(self)
        quotas = np.floor(exact).astype(np.int64)
        for r in np.argsort(-(exact - quotas), kind="stable")[: span - int(quotas.sum())]:
            quotas[r] += 1
        return [int(k) for k in np.minimum(quotas, sizes)]

    def _shaped(self, queues: list[list[int]], z: np.ndarray) -> list[int]:
        """``staged`` (blocks in level order) or ``mixed`` (blocks blurred by ``z``) over ``queues``."""
        if self.strategy == "staged":
            return [i for q in queues for i in q]
        return self._mixed(queues, z)

    def _mixed(self, queues: list[list[int]], z: np.ndarray) -> list[int]:
        """Sort by level centre plus Gaussian noise (see the module docstring)."""
        sizes = np.array([len(q) for q in queues], dtype=np.float64)
        if sizes.sum() == 0:
            return []
        centres = (np.cumsum(sizes) - sizes / 2) / sizes.sum()
        staged = np.array([i for q in queues for i in q], dtype=np.int64)
        keys = np.repeat(centres, sizes.astype(np.int64)) + self.width * z
        return staged[np.argsort(keys, kind="stable")].tolist()

    def _linear(self, queues: list[list[int]], u: np.ndarray, consumed_before: int) -> list[int]:
        """Draws without replacement under a rising ceiling (plain Python: few levels, many rows)."""
        n_levels = len(queues)
        remaining = [len(q) for q in queues]
        heads = [0] * n_levels
        draws = u.tolist()
        order: list[int] = []
        for t in range(len(self)):
            top = self._ceiling_rank(self.progress_at(consumed_before, t))
            weights = [float(remaining[r]) if r <= top else 0.0 for r in range(n_levels)]
            if not any(weights):  # eligible levels used up: take the easiest one left
                weights[next(r for r in range(n_levels) if remaining[r])] = 1.0
            target = draws[t] * sum(weights)
            chosen, acc = -1, 0.0
            for r, w in enumerate(weights):
                if w > 0:
                    chosen, acc = r, acc + w
                    if target < acc:
                        break
            order.append(queues[chosen][heads[chosen]])
            heads[chosen] += 1
            remaining[chosen] -= 1
        return order

    # ----------------------------------------------------------------------------------------
    # Iteration and checkpointing
    # ----------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[int]:
        """Start (or, right after ``load_state_dict``, resume) an epoch.

        A new iterator after indices were drawn moves on to the next epoch, as DataLoader does
        when verl restarts its iterator on ``StopIteration``; an iterator that was created but
        never advanced does not count as an epoch.
        """
        if self._resume_pending:
            self._resume_pending = False
        elif self._yielded > 0:
            self._consumed_before += self._yielded
            self._epoch += 1
            self._yielded = 0
        self._generation += 1
        order = self.epoch_order(self._epoch, self._consumed_before)
        return _CurriculumIterator(self, order, self._yielded, self._generation)

    def state_dict(self) -> dict[str, Any]:
        """Position in training plus a fingerprint of what the order depends on."""
        return {
            "version": _STATE_VERSION,
            "strategy": self.strategy,
            "seed": self.seed,
            "num_samples": len(self),
            "levels_digest": self._digest,
            "total_samples": self.total_samples,
            "width": self.width,
            "epoch": self._epoch,
            "yielded": self._yielded,
            "consumed_before": self._consumed_before,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at the saved position on the next ``iter()``.

        Raises:
            ValueError: the state came from a different dataset, strategy or seed, so the saved
                position would not mean the same samples.
        """
        mine = self.state_dict()
        for key in ("strategy", "seed", "num_samples", "levels_digest"):
            if state.get(key) != mine[key]:
                raise ValueError(
                    f"curriculum sampler state does not match: {key}={state.get(key)!r} in the "
                    f"checkpoint, {mine[key]!r} now (was the dataset or curriculum config changed?)"
                )
        order_keys = {
            "linear": ("total_samples",),
            "mixed": ("total_samples", "width"),
            "staged": ("total_samples",),
        }[self.strategy]
        for key in order_keys:
            if state.get(key) != mine[key]:
                logger.warning(
                    "curriculum %s changed from %r to %r on resume; the current epoch's remaining "
                    "order may repeat or skip samples",
                    key,
                    state.get(key),
                    mine[key],
                )
        self._epoch = int(state["epoch"])
        self._yielded = int(state["yielded"])
        self._consumed_before = int(state["consumed_before"])
        self._resume_pending = True


class _CurriculumIterator(Iterator[int]):
    """Walks one epoch's order and records the position on the sampler (for ``state_dict``)."""

    def __init__(self, sampler: CurriculumSampler, order: list[int], start: int, generation: int) -> None:
        self._sampler = sampler
        self._order = order
        self._pos = start
        self._generation = generation

    def __iter__(self) -> _CurriculumIterator:
        return self

    def __next__(self) -> int:
        if self._pos >= len(self._order):
            raise StopIteration
        index = self._order[self._pos]
        self._pos += 1
        if self._generation == self._sampler._generation:  # a stale iterator must not move state
            self._sampler._yielded = self._pos
        return index


def build_curriculum_sampler(
    strategy: str,
    mask_nums: Sequence[int],
    *,
    seed: int,
    total_samples: int | None,
    **kwargs: Any,
) -> CurriculumSampler | None:
    """The sampler for ``strategy``, or ``None`` for ``"none"`` (use verl's default sampler).

    ``kwargs`` go to ``CurriculumSampler`` (``zero_mask_level``, ``width``).
    """
    name = str(strategy).strip().lower()
    if name == "none":
        return None
    if name not in STRATEGIES:
        raise ValueError(f"Unknown curriculum strategy '{strategy}'; known: {[*STRATEGIES, 'none']}")
    return CurriculumSampler(mask_nums, strategy=name, seed=seed, total_samples=total_samples, **kwargs)


def mask_nums_from_dataset(dataset: Any) -> list[int]:
    """``extra_info.mask_num`` of every row of a verl ``RLHFDataset`` (its ``dataframe``).

    Read after verl's overlong-prompt filter has run, so index ``i`` matches ``dataset[i]``.
    Also accepts a ``datasets.Dataset`` or a pandas ``DataFrame`` directly.

    Raises:
        ValueError: the ``extra_info`` column, or ``mask_num`` in some row, is missing.
    """
    frame = getattr(dataset, "dataframe", dataset)
    columns = list(getattr(frame, "column_names", None) or getattr(frame, "columns", []))
    hint = "build the data with `masksearch ramp build` or `masksearch qa prepare`"
    if "extra_info" not in columns:
        raise ValueError(
            f"the curriculum needs the column 'extra_info.mask_num', but there is no 'extra_info' column; {hint}"
        )
    if hasattr(frame, "select_columns"):  # datasets.Dataset: one Arrow column, row order respected
        import pyarrow as pa
        import pyarrow.compute as pc

        column = frame.select_columns(["extra_info"]).with_format("arrow")[:].column("extra_info")
        if not pa.types.is_struct(column.type) or column.type.get_field_index("mask_num") < 0:
            raise ValueError(
                f"the curriculum needs the column 'extra_info.mask_num', which is missing; {hint}"
            )
        values = pc.struct_field(column, "mask_num").to_pylist()
    else:
        values = [info.get("mask_num") if isinstance(info, dict) else None for info in frame["extra_info"]]
    missing = [i for i, v in enumerate(values) if v is None]
    if missing:
        raise ValueError(
            f"'extra_info.mask_num' is missing in {len(missing)} rows (first: row {missing[0]}); {hint}"
        )
    return [int(v) for v in values]
