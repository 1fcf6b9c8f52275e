"""Per-batch curriculum metrics (masksearch.curriculum.metrics)."""

from __future__ import annotations

import pytest

from masksearch.curriculum import metrics
from masksearch.curriculum.metrics import (
    acc_by_mask_num_metrics,
    mask_num_batch_metrics,
    mask_num_of,
    mask_nums_from_extra_info,
)


class TestMaskNumBatchMetrics:
    @pytest.mark.parametrize(
        ("mask_nums", "levels", "expected"),
        [
            # plain batch: mean and one share per count present
            ([1, 1, 2, 4], (), {"mean": 2.0, 1: 0.5, 2: 0.25, 4: 0.25}),
            # stable keys: absent levels get 0.0
            ([2, 2], range(1, 5), {"mean": 2.0, 1: 0.0, 2: 1.0, 3: 0.0, 4: 0.0}),
            # QA rows (0) count as a level of their own
            ([0, 0, 0, 3], (), {"mean": 0.75, 0: 0.75, 3: 0.25}),
        ],
    )
    def test_values(self, mask_nums, levels, expected):
        out = mask_num_batch_metrics(mask_nums, levels)
        want = {"curriculum/mask_num_mean": expected.pop("mean")}
        want.update({f"curriculum/mask_num_share_{k}": v for k, v in expected.items()})
        assert out == pytest.approx(want)
        shares = [v for k, v in out.items() if "share" in k]
        assert sum(shares) == pytest.approx(1.0)

    def test_empty_batch(self):
        assert mask_num_batch_metrics([]) == {}

    def test_accepts_numpy(self):
        np = pytest.importorskip("numpy")
        assert mask_num_batch_metrics(np.array([1, 3]))["curriculum/mask_num_mean"] == 2.0


def test_mask_nums_from_extra_info_skips_missing():
    infos = [{"mask_num": 2}, None, {"index": 3}, {"mask_num": 0}, {"mask_num": None}]
    assert mask_nums_from_extra_info(infos) == [2, 0]


class _Wrapped:
    """TransferQueue hands non-tensor fields back wrapped in an object with ``.data``."""

    def __init__(self, data):
        self.data = data


class TestAccByMaskNumMetrics:
    @pytest.mark.parametrize(
        ("mask_nums", "accs", "expected"),
        [
            # one mean per count present; counts absent this step get no key
            ([1, 1, 2, 4], [1.0, 0.0, 1.0, 0.0], {1: 0.5, 2: 1.0, 4: 0.0}),
            # rows without a mask count or an acc are skipped, not counted as 0
            ([1, None, 2, 2], [1.0, 0.0, None, 0.5], {1: 1.0, 2: 0.5}),
            # non-numeric / non-finite acc, non-integer or string mask count: skipped
            ([1, 1, 2.5, "3", 3], ["x", float("nan"), 1.0, 1.0, True], {3: 1.0}),
            # bools and ints are accs too (a reward may return acc as a bool)
            ([3, 3, 3], [True, False, 1], {3: 2 / 3}),
            # empty batch
            ([], [], {}),
            # lists of different lengths cannot be paired
            ([1, 2], [1.0], {}),
        ],
    )
    def test_values(self, mask_nums, accs, expected):
        want = {f"reward/acc/mask_{k}": v for k, v in expected.items()}
        out = acc_by_mask_num_metrics(mask_nums, accs)
        assert out == pytest.approx(want) and list(out) == sorted(out, key=lambda k: int(k.rsplit("_", 1)[1]))

    def test_numpy_and_torch_scalars(self):
        np = pytest.importorskip("numpy")
        torch = pytest.importorskip("torch")
        out = acc_by_mask_num_metrics(
            np.array([1, 1, 2]), [torch.tensor(1.0), np.float32(0.0), torch.ones(3)]
        )
        assert out == {"reward/acc/mask_1": 0.5}  # the 3-element tensor is not a scalar: skipped

    def test_means_match_a_split_by_hand(self):
        hypothesis = pytest.importorskip("hypothesis")
        st = pytest.importorskip("hypothesis.strategies")

        @hypothesis.given(
            st.lists(st.tuples(st.integers(0, 4), st.sampled_from([0.0, 0.5, 1.0])), max_size=40)
        )
        def check(rows):
            out = acc_by_mask_num_metrics([k for k, _ in rows], [a for _, a in rows])
            assert set(out) == {f"reward/acc/mask_{k}" for k, _ in rows}
            for k in {k for k, _ in rows}:
                accs = [a for m, a in rows if m == k]
                assert out[f"reward/acc/mask_{k}"] == pytest.approx(sum(accs) / len(accs))

        check()


@pytest.mark.parametrize(
    ("extra_info", "expected"),
    [
        ({"mask_num": 2}, 2),
        ({"mask_num": 0}, 0),  # QA rows
        (_Wrapped({"mask_num": 3}), 3),  # TransferQueue wrapper
        ({"mask_num": 2.0}, 2),
        ({"mask_num": 2.5}, None),
        ({"mask_num": None}, None),
        ({"index": 3}, None),
        (None, None),
        ("junk", None),
    ],
)
def test_mask_num_of(extra_info, expected):
    assert mask_num_of(extra_info) == expected


def test_doctests():
    import doctest

    assert doctest.testmod(metrics).failed == 0
