"""Per-batch curriculum metrics (masksearch.curriculum.metrics)."""

from __future__ import annotations

import pytest

from masksearch.curriculum.metrics import mask_num_batch_metrics, mask_nums_from_extra_info


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
