"""Mask-count curriculum: a resumable ``Sampler[int]`` that orders RAMP rows from easy to hard.

MaskSearch trains on 1-mask samples before 4-mask ones. verl 0.9.1 has no sampler hook, so the
trainer builds its ``StatefulDataLoader`` with this sampler instead of ``create_rl_sampler``'s
(``build_curriculum_sampler`` returns ``None`` for ``strategy="none"`` to keep verl's default).

Strategies (a *level* is a distinct mask count present in the data, sorted ascending):

- ``staged``: the span is cut into one block per level, in level order, each as long as its
  level's share of the data; each level is shuffled.
- ``linear``: a difficulty ceiling rises with training progress ``p``: at position ``t`` only
  levels with rank ``<= floor(p * n_levels)`` are eligible, drawn in proportion to what is left
  of them. When the eligible levels are used up, the easiest remaining level is taken.
- ``mixed``: a soft ``staged``: position ``pos`` takes the level whose block holds
  ``pos / span + width * z`` (``z`` standard normal), so the mask count shifts from easy to hard
  over the span with blurred block edges. ``width=0`` is ``staged``; a large width mixes freely.
- ``balanced``: no easy-to-hard order: position ``pos`` takes level ``pos mod n_levels``, so every
  ``n_levels`` consecutive rows (every batch of a multiple of that size) hold each level once, until
  a level runs out. For small batches, where a random draw (``none``) gives lumpy mask counts and
  the policy follows the counts of its latest batches (issue 22's RL sweep).

The *span* is the training the run will do: ``total_samples`` (the trainer passes
``total_training_steps x train_batch_size``), so a 12-step run and a 100-step run both go from 1 to
4 masks even when they draw far less than an epoch (issue 22: ``staged`` over a whole epoch of
~1,900 RAMP rows kept a 4-step run on 1-mask rows). A run longer than one epoch has the shape
every epoch (the span of an epoch is the epoch, or what is left of the run if that is shorter).
With ``total_samples=None`` the span is the epoch. Past the span (a run that draws more than
planned: dynamic sampling regenerates filtered groups) the rows left come hardest level first.
A level that has no rows left gives its positions to the next harder level (else the next easier).

Every epoch is a permutation of the dataset (each index exactly once), like verl's default
sampler, so epochs, ``drop_last`` and ``len(dataloader)`` keep their meaning. For ``linear``,
progress ``p`` is ``samples drawn so far / total_samples`` across epochs (capped at 1); with
``total_samples=None`` it restarts each epoch.

Resuming: an epoch's order is a pure function of ``(seed, epoch, samples drawn before it,
total_samples)`` and of the indices this epoch already drew, so ``state_dict()`` records those
counters, the drawn indices and a fingerprint of the data. torchdata's ``StatefulDataLoader``
stores ``sampler.state_dict()`` (through its ``BatchSampler``) in ``dataloader.state_dict()``, which
verl saves to ``global_step_N/data.pt``; on load it calls ``sampler.load_state_dict`` and then
``iter(sampler)``, which continues after the drawn indices. A run resumed with a longer
``trainer.total_training_steps`` re-plans what is left: nothing drawn is repeated or skipped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from masksearch.core.logs import module_logger

logger = module_logger(__name__)

STRATEGIES = ("staged", "linear", "mixed", "balanced")
_STATE_VERSION = 2  # 2: staged/mixed span the run (total_samples); the epoch's drawn prefix


def _strategy_name(strategy: str) -> str:
    """``strategy`` lower-cased; ``ValueError`` naming the known ones (``none`` included) otherwise."""
    name = str(strategy).strip().lower()
    if name not in (*STRATEGIES, "none"):
        raise ValueError(f"Unknown curriculum strategy '{strategy}'; known: {[*STRATEGIES, 'none']}")
    return name


@dataclass(frozen=True)
class CurriculumSettings:
    """``masksearch.curriculum``: the order the ``masksearch`` trainer mode draws training rows in.

    Attributes:
        strategy: ``none`` (verl's own sampler), ``staged``, ``linear``, ``mixed`` or ``balanced``
            (module docstring).
        total_samples: the span; ``None``: the run's ``total_training_steps x train_batch_size``.
        seed: ``None``: ``data.seed`` (1 when that is unset).
        zero_mask_level, width: as in :class:`CurriculumSampler`.
    """

    strategy: str = "none"
    total_samples: int | None = None
    seed: int | None = None
    zero_mask_level: int | None = None
    width: float = 0.2

    def __post_init__(self) -> None:
        _strategy_name(self.strategy)


class CurriculumSampler(Sampler[int]):
    """Yield dataset indices ordered by difficulty (``mask_num``); seedable and resumable.

    Args:
        mask_nums: ``extra_info.mask_num`` of every dataset row, in dataset order.
        strategy: ``"staged"``, ``"linear"``, ``"mixed"`` or ``"balanced"``.
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
        sizes = np.bincount(self._rank, minlength=len(self.level_values))
        self._cum_shares = np.cumsum(sizes) / len(levels)  # where each level's block ends in a span
        self._digest = hashlib.sha256(levels.tobytes()).hexdigest()[:16]
        # Position: ``_yielded`` indices of epoch ``_epoch`` were drawn; ``_consumed_before``
        # indices were drawn in earlier epochs.
        self._epoch = 0
        self._yielded = 0
        self._consumed_before = 0
        self._resume_pending = False
        self._generation = 0
        self._order_cache: tuple[tuple[int, int, int, int], list[int]] | None = None
        self._order: list[int] = []  # the current epoch's order (its drawn prefix goes into the state)
        self._prefix: list[int] | None = None  # a resumed epoch's drawn indices

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
    # Order of one epoch (pure in seed, epoch, consumed_before, total_samples and the drawn prefix)
    # ----------------------------------------------------------------------------------------

    def epoch_span(self, consumed_before: int) -> int:
        """Positions of the epoch that starts after ``consumed_before`` draws over which ``staged``
        and ``mixed`` go from easy to hard: what is left of the run, at least 1, at most the epoch."""
        if self.total_samples is None:
            return len(self)
        return min(len(self), max(1, self.total_samples - consumed_before))

    def epoch_order(self, epoch: int, consumed_before: int, prefix: Sequence[int] = ()) -> list[int]:
        """The full index order of ``epoch``, given ``consumed_before`` earlier draws.

        ``prefix``: indices of this epoch already drawn (a resume); the order continues after them
        with the rows left, at their positions, so a run resumed with another ``total_samples`` (or
        ``width``) re-plans the rest of the epoch without repeating or skipping a row. Without a
        prefix, and with the prefix this very order would have drawn, the result is the same.
        """
        prefix = [int(i) for i in prefix]
        key = (epoch, consumed_before, hash(tuple(prefix)), len(prefix))
        if self._order_cache is not None and self._order_cache[0] == key:
            return self._order_cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        n_levels = len(self.level_values)
        queues = [rng.permutation(np.flatnonzero(self._rank == r)).tolist() for r in range(n_levels)]
        jitter = rng.standard_normal(len(self)).tolist()  # mixed: the blur of each position's level
        draws = rng.random(len(self)).tolist()  # linear: which eligible level each position takes
        if prefix:
            taken = set(prefix)
            if len(taken) != len(prefix) or not taken <= set(range(len(self))):
                raise ValueError("the curriculum sampler's saved prefix is not a set of dataset indices")
            queues = [[i for i in q if i not in taken] for q in queues]
        remaining = [len(q) for q in queues]
        heads = [0] * n_levels
        span = self.epoch_span(consumed_before)
        order = list(prefix)
        for pos in range(len(prefix), len(self)):
            if self.strategy == "linear":
                r = self._linear_level(remaining, self.progress_at(consumed_before, pos), draws[pos])
            elif self.strategy == "balanced":
                r = self._nearest_level_left(pos % n_levels, remaining)
            else:
                f = pos / span + (self.width * jitter[pos] if self.strategy == "mixed" else 0.0)
                r = self._nearest_level_left(self._level_at(f), remaining)
            order.append(queues[r][heads[r]])
            heads[r] += 1
            remaining[r] -= 1
        self._order_cache = (key, order)
        return order

    def _level_at(self, f: float) -> int:
        """The level whose block holds span fraction ``f``: blocks in level order, each as long as
        its level's share of the data; ``f >= 1`` (past the span) is the hardest level."""
        return min(len(self.level_values) - 1, int(np.searchsorted(self._cum_shares, f, side="right")))

    @staticmethod
    def _nearest_level_left(r: int, remaining: list[int]) -> int:
        """``r`` if it has rows left, else the next harder level with rows, else the next easier."""
        for level in [*range(r, len(remaining)), *range(r - 1, -1, -1)]:
            if remaining[level]:
                return level
        raise AssertionError("no rows left in an epoch that is not finished")  # pragma: no cover

    def _linear_level(self, remaining: list[int], progress: float, u: float) -> int:
        """A level under the ceiling, in proportion to what is left of it; none left: the easiest."""
        top = self._ceiling_rank(progress)
        weights = [float(remaining[r]) if r <= top else 0.0 for r in range(len(remaining))]
        if not any(weights):  # eligible levels used up: take the easiest one left
            return next(r for r in range(len(remaining)) if remaining[r])
        target = u * sum(weights)
        chosen, acc = -1, 0.0
        for r, w in enumerate(weights):
            if w > 0:
                chosen, acc = r, acc + w
                if target < acc:
                    break
        return chosen

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
        prefix = self._prefix if self._prefix is not None else ()
        self._prefix = None
        self._order = self.epoch_order(self._epoch, self._consumed_before, prefix)
        return _CurriculumIterator(self, self._order, self._yielded, self._generation)

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
            # this epoch's drawn indices: a resume continues after exactly these, whatever changed
            "drawn": [int(i) for i in self._order[: self._yielded]],
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
        drawn = state.get("drawn")
        if drawn is not None and len(drawn) != int(state["yielded"]):
            raise ValueError("curriculum sampler state is inconsistent: 'drawn' does not match 'yielded'")
        for key in ("total_samples", "width"):
            if state.get(key) != mine[key]:
                logger.warning(
                    "curriculum %s changed from %r to %r on resume; the rest of the run is re-planned%s",
                    key,
                    state.get(key),
                    mine[key],
                    "" if drawn is not None else " (an old checkpoint: the epoch may repeat or skip rows)",
                )
        self._epoch = int(state["epoch"])
        self._yielded = int(state["yielded"])
        self._consumed_before = int(state["consumed_before"])
        self._prefix = [int(i) for i in drawn] if drawn is not None else None
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
    name = _strategy_name(strategy)
    if name == "none":
        return None
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
