"""Curriculum sampler (masksearch.curriculum.sampler): order, progress, and exact resume."""

from __future__ import annotations

import io
import random

import pytest
import torch
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from masksearch.curriculum.sampler import CurriculumSampler, build_curriculum_sampler, mask_nums_from_dataset


def mask_nums(n: int = 200, seed: int = 0, levels=(1, 2, 3, 4), weights=(4, 3, 2, 1)) -> list[int]:
    """Unbalanced on purpose (many easy rows), so linear and staged differ."""
    rng = random.Random(seed)
    return rng.choices(list(levels), weights=list(weights), k=n)


class IndexDataset(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def _mean(xs) -> float:
    return sum(xs) / len(xs)


class TestOrder:
    @pytest.mark.parametrize("strategy", ["staged", "linear", "mixed", "balanced"])
    def test_each_epoch_is_a_permutation_and_seeded(self, strategy):
        m = mask_nums()
        s = CurriculumSampler(m, strategy=strategy, seed=1)
        first, second = list(s), list(s)
        assert sorted(first) == sorted(second) == list(range(len(m)))
        assert first == list(CurriculumSampler(m, strategy=strategy, seed=1))  # same seed, same order
        assert first != list(CurriculumSampler(m, strategy=strategy, seed=2))
        assert first != second  # a new epoch reshuffles
        assert s.epoch == 1 and s.samples_drawn == 2 * len(m)

    def test_balanced_gives_every_batch_each_level_until_one_runs_out(self):
        m = mask_nums(200)  # unbalanced 4:3:2:1: the 4-mask rows run out first
        levels = [m[i] for i in CurriculumSampler(m, strategy="balanced", seed=0, total_samples=40)]
        fewest = min(m.count(level) for level in (1, 2, 3, 4))
        for start in range(0, 4 * fewest, 4):  # every window of 4 (a batch of 4 prompts) holds 1, 2, 3, 4
            assert sorted(levels[start : start + 4]) == [1, 2, 3, 4], start
        assert 4 not in levels[4 * fewest :]  # then the others go on, still a permutation
        assert sorted(levels) == sorted(m)

    def test_staged_is_monotone_in_mask_num(self):
        m = mask_nums()
        order = list(CurriculumSampler(m, strategy="staged", seed=3))
        levels = [m[i] for i in order]
        assert levels == sorted(levels)

    @pytest.mark.parametrize("strategy", ["linear", "mixed"])
    def test_mean_mask_num_rises_over_time(self, strategy):
        m = mask_nums(400)
        levels = [m[i] for i in CurriculumSampler(m, strategy=strategy, seed=0)]
        quarters = [_mean(levels[q * 100 : (q + 1) * 100]) for q in range(4)]
        assert quarters == sorted(quarters) and quarters[3] - quarters[0] > 1.0

    def test_linear_respects_the_ceiling(self):
        """A level above the ceiling is drawn only once every level under it is used up."""
        m = mask_nums(300)
        s = CurriculumSampler(m, strategy="linear", seed=0)
        order = list(s)
        left = {v: m.count(v) for v in s.level_values}
        for t, i in enumerate(order):
            ceiling = s.level_values[min(3, int(t / len(m) * 4))]
            if m[i] > ceiling:
                assert all(left[v] == 0 for v in s.level_values if v <= ceiling)
            left[m[i]] -= 1

    def test_mixed_width_zero_is_staged_and_keeps_level_shares(self):
        m = mask_nums()
        staged = [m[i] for i in CurriculumSampler(m, strategy="staged", seed=4)]
        assert [m[i] for i in CurriculumSampler(m, strategy="mixed", seed=4, width=0.0)] == staged
        mixed = [m[i] for i in CurriculumSampler(m, strategy="mixed", seed=4)]
        assert mixed != staged and sorted(mixed) == staged
        assert len(set(mixed[:50])) > 1  # levels do mix

    def test_progress_spans_epochs_with_total_samples(self):
        m = mask_nums(200)
        s = CurriculumSampler(m, strategy="linear", seed=0, total_samples=400)
        epoch1, epoch2 = [m[i] for i in s], [m[i] for i in s]
        assert _mean(epoch2[:50]) > _mean(epoch1[:50])  # epoch 2 starts at progress 0.5
        assert s.progress == 1.0 and s.metrics()["curriculum/ceiling"] == 4.0

    @pytest.mark.parametrize(("zero_level", "qa_position"), [(None, "first"), (4, "with_hardest")])
    def test_qa_rows_easiest_or_configurable(self, zero_level, qa_position):
        m = [0] * 10 + mask_nums(40)
        order = list(CurriculumSampler(m, strategy="staged", seed=0, zero_mask_level=zero_level))
        qa_positions = sorted(order.index(i) for i in range(10))
        if qa_position == "first":
            assert qa_positions == list(range(10))
        else:
            assert min(qa_positions) >= 50 - 10 - m.count(4)

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"strategy": "random"}, "Unknown curriculum strategy"),
            ({"total_samples": 0}, "total_samples"),
            ({"width": -1}, "width"),
        ],
    )
    def test_bad_arguments(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            CurriculumSampler([1, 2], **kwargs)
        with pytest.raises(ValueError, match="non-empty"):
            CurriculumSampler([])


class TestResume:
    @pytest.mark.parametrize("strategy", ["staged", "linear", "mixed", "balanced"])
    @pytest.mark.parametrize("stop_at", [0, 37, 200, 263])  # start, mid epoch 1, epoch end, mid epoch 2
    def test_state_dict_round_trip(self, strategy, stop_at):
        m = mask_nums()
        reference = CurriculumSampler(m, strategy=strategy, seed=5, total_samples=500)
        full = list(reference) + list(reference) + list(reference)
        s = CurriculumSampler(m, strategy=strategy, seed=5, total_samples=500)
        seen: list[int] = []
        it = iter(s)
        while len(seen) < stop_at:
            try:
                seen.append(next(it))
            except StopIteration:
                it = iter(s)
        state = s.state_dict()
        resumed = CurriculumSampler(m, strategy=strategy, seed=5, total_samples=500)
        resumed.load_state_dict(state)
        rest = list(resumed)
        while len(seen) + len(rest) < len(full):
            rest += list(resumed)
        assert seen + rest == full

    def test_state_from_another_dataset_is_refused(self):
        state = CurriculumSampler(mask_nums(seed=0), seed=1).state_dict()
        with pytest.raises(ValueError, match="levels_digest"):
            CurriculumSampler(mask_nums(seed=9), seed=1).load_state_dict(state)
        with pytest.raises(ValueError, match="seed"):
            CurriculumSampler(mask_nums(seed=0), seed=2).load_state_dict(state)

    def test_idle_iterators_do_not_count_as_epochs(self):
        s = CurriculumSampler(mask_nums(), seed=0)
        iter(s), iter(s)
        assert s.epoch == 0
        it = iter(s)
        next(it)
        iter(s)
        assert s.epoch == 1


def _loader(m: list[int], strategy: str, num_workers: int = 0) -> StatefulDataLoader:
    sampler = CurriculumSampler(m, strategy=strategy, seed=11, total_samples=3 * len(m))
    return StatefulDataLoader(
        IndexDataset(len(m)), batch_size=8, sampler=sampler, drop_last=True, num_workers=num_workers
    )


def _take(it_holder: dict, dl: StatefulDataLoader, n: int) -> list[list[int]]:
    """n batches, restarting the iterator at epoch end as verl's trainer does."""
    out = []
    while len(out) < n:
        try:
            out.append(next(it_holder["it"]).tolist())
        except StopIteration:
            it_holder["it"] = iter(dl)
    return out


class TestStatefulDataLoader:
    @pytest.mark.parametrize("strategy", ["staged", "linear", "mixed", "balanced"])
    @pytest.mark.parametrize("stop_after", [5, 12])  # mid epoch 1; mid epoch 2 (an epoch is 12 batches)
    def test_resume_continues_exactly(self, strategy, stop_after):
        m = mask_nums(100)
        ref_dl = _loader(m, strategy)
        ref = _take({"it": iter(ref_dl)}, ref_dl, 30)

        dl = _loader(m, strategy)
        holder = {"it": iter(dl)}
        before = _take(holder, dl, stop_after)
        buffer = io.BytesIO()
        torch.save(dl.state_dict(), buffer)  # what verl writes to global_step_N/data.pt
        buffer.seek(0)

        new_dl = _loader(m, strategy)
        new_dl.load_state_dict(torch.load(buffer, weights_only=False))
        after = _take({"it": iter(new_dl)}, new_dl, 30 - stop_after)
        assert before + after == ref
        first_epoch = [i for b in (before + after)[:12] for i in b]
        assert len(set(first_epoch)) == len(first_epoch) == 96  # no index repeated or skipped

    def test_resume_with_a_worker_process(self):
        m = mask_nums(64)
        ref_dl = _loader(m, "mixed", num_workers=1)
        ref = _take({"it": iter(ref_dl)}, ref_dl, 6)
        dl = _loader(m, "mixed", num_workers=1)
        holder = {"it": iter(dl)}
        before = _take(holder, dl, 3)
        state = dl.state_dict()
        del holder
        new_dl = _loader(m, "mixed", num_workers=1)
        new_dl.load_state_dict(state)
        assert before + _take({"it": iter(new_dl)}, new_dl, 3) == ref


class TestScheduleSpansTheRun:
    """Issue 22: a run shorter than an epoch still goes from 1 to 4 masks (the span is the run)."""

    @pytest.mark.parametrize("strategy", ["staged", "mixed", "linear"])
    @pytest.mark.parametrize("steps", [12, 100])
    def test_a_short_run_reaches_the_hardest_level(self, strategy, steps):
        m = mask_nums(1880, weights=(1, 1, 1, 1))  # like the embedded RAMP data: ~470 rows per level
        batch = 8
        s = CurriculumSampler(m, strategy=strategy, seed=0, total_samples=steps * batch)
        order = list(s)
        assert sorted(order) == list(range(len(m)))  # still a permutation of the epoch
        run = [m[i] for i in order[: steps * batch]]
        first, last = run[: len(run) // 4], run[-(len(run) // 4) :]
        assert min(first) == 1 and 4 in last
        assert _mean(last) - _mean(first) > 1.5
        if strategy == "staged":  # blocks of the run, in level order, each its level's share
            assert run == sorted(run)
            counts = [run.count(level) for level in (1, 2, 3, 4)]
            assert sum(counts) == len(run) and max(counts) - min(counts) <= len(run) // 10

    def test_staged_blocks_follow_the_level_shares(self):
        m = mask_nums(200)  # unbalanced: 4:3:2:1
        s = CurriculumSampler(m, strategy="staged", seed=0, total_samples=50)
        order = list(s)
        run = [m[i] for i in order[:50]]
        assert run == sorted(run)
        shares = [m.count(level) * 50 / len(m) for level in (1, 2, 3, 4)]
        assert all(abs(run.count(level) - x) <= 1 for level, x in zip((1, 2, 3, 4), shares, strict=True))
        rest = [m[i] for i in order[50:]]
        assert rest == sorted(rest, reverse=True)  # past the span: hardest first

    def test_a_run_longer_than_an_epoch_has_the_shape_every_epoch(self):
        m = mask_nums(100, weights=(1, 1, 1, 1))
        s = CurriculumSampler(m, strategy="staged", seed=0, total_samples=250)
        epochs = [[m[i] for i in list(s)] for _ in range(3)]
        assert epochs[0] == sorted(epochs[0]) and epochs[1] == sorted(epochs[1])
        # the third epoch holds the last 50 samples of the run: 1 -> 4 within them
        assert epochs[2][:50] == sorted(epochs[2][:50]) and epochs[2][0] == 1 and epochs[2][49] == 4

    @pytest.mark.parametrize("strategy", ["staged", "mixed"])
    def test_resume_in_a_short_run_continues_exactly(self, strategy):
        m = mask_nums(400, weights=(1, 1, 1, 1))

        def loader() -> StatefulDataLoader:
            sampler = CurriculumSampler(m, strategy=strategy, seed=5, total_samples=12 * 8)
            return StatefulDataLoader(IndexDataset(len(m)), batch_size=8, sampler=sampler, drop_last=True)

        ref_dl = loader()
        ref = _take({"it": iter(ref_dl)}, ref_dl, 12)
        dl = loader()
        before = _take({"it": iter(dl)}, dl, 7)
        buffer = io.BytesIO()
        torch.save(dl.state_dict(), buffer)
        buffer.seek(0)
        new_dl = loader()
        new_dl.load_state_dict(torch.load(buffer, weights_only=False))
        assert before + _take({"it": iter(new_dl)}, new_dl, 5) == ref
        last_step = [m[i] for i in ref[-1]]
        assert 4 in last_step and (strategy != "staged" or last_step == [4] * 8)  # the run ends hard


class TestResumeWithAnotherSpan:
    """A run resumed with a longer ``total_training_steps`` re-plans the rest of its epoch."""

    @pytest.mark.parametrize("strategy", ["staged", "mixed", "linear", "balanced"])
    def test_no_repeat_no_skip_and_the_extension_stays_hard(self, strategy):
        m = mask_nums(24, weights=(1, 1, 1, 1))
        first = CurriculumSampler(m, strategy=strategy, seed=3, total_samples=8)
        it = iter(first)
        drawn = [next(it) for _ in range(8)]
        state = first.state_dict()
        assert state["drawn"] == drawn
        longer = CurriculumSampler(m, strategy=strategy, seed=3, total_samples=12)
        longer.load_state_dict(state)
        rest = list(iter(longer))
        assert sorted(drawn + rest) == list(range(24))  # the epoch: each row once
        if strategy == "staged":  # positions 8..11 of 12: the end of the re-planned run, hardest levels
            assert [m[i] for i in rest[:4]] == sorted(m[i] for i in rest[:4]) and m[rest[3]] == 4

    @pytest.mark.parametrize("strategy", ["staged", "mixed", "linear", "balanced"])
    def test_the_same_span_resumes_exactly(self, strategy):
        m = mask_nums(60)
        ref = list(CurriculumSampler(m, strategy=strategy, seed=1, total_samples=40))
        s = CurriculumSampler(m, strategy=strategy, seed=1, total_samples=40)
        it = iter(s)
        head = [next(it) for _ in range(17)]
        again = CurriculumSampler(m, strategy=strategy, seed=1, total_samples=40)
        again.load_state_dict(s.state_dict())
        assert head + list(iter(again)) == ref

    def test_a_state_without_drawn_indices_still_loads(self):
        m = mask_nums(40)
        s = CurriculumSampler(m, strategy="staged", seed=1, total_samples=20)
        it = iter(s)
        head = [next(it) for _ in range(5)]
        old = {k: v for k, v in s.state_dict().items() if k != "drawn"}  # a version-1 checkpoint
        again = CurriculumSampler(m, strategy="staged", seed=1, total_samples=20)
        again.load_state_dict(old)
        assert head + list(iter(again)) == list(
            CurriculumSampler(m, strategy="staged", seed=1, total_samples=20)
        )


class TestBuildAndDatasetHelpers:
    def test_build(self):
        assert build_curriculum_sampler("none", [1, 2], seed=0, total_samples=None) is None
        s = build_curriculum_sampler("Linear", [0, 1, 2], seed=3, total_samples=10, zero_mask_level=2)
        assert isinstance(s, CurriculumSampler) and s.strategy == "linear" and s.level_values == [1, 2]
        with pytest.raises(ValueError, match="Unknown curriculum strategy 'hard'"):
            build_curriculum_sampler("hard", [1], seed=0, total_samples=None)

    def test_mask_nums_from_pandas_and_datasets(self):
        import datasets
        import pandas as pd

        rows = [{"extra_info": {"mask_num": k, "index": i}} for i, k in enumerate([1, 0, 3])]
        assert mask_nums_from_dataset(pd.DataFrame(rows)) == [1, 0, 3]

        class Wrapper:  # like RLHFDataset: the rows live in .dataframe
            dataframe = datasets.Dataset.from_list(rows)

        assert mask_nums_from_dataset(Wrapper()) == [1, 0, 3]

    @pytest.mark.parametrize(
        "rows",
        [
            [{"prompt": "x"}],  # no extra_info column
            [{"extra_info": {"index": 0}}],  # extra_info without mask_num
            [{"extra_info": {"mask_num": 1}}, {"extra_info": {"mask_num": None}}],  # one row missing
        ],
    )
    def test_missing_mask_num_names_the_column(self, rows):
        import datasets

        with pytest.raises(ValueError, match=r"extra_info\.mask_num"):
            mask_nums_from_dataset(datasets.Dataset.from_list(rows))
