"""The masksearch trainer mode's metric aggregation (the part verl does not do for training)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

from masksearch.recipes import trainer
from masksearch.recipes.trainer import reward_extra_metrics


class _Wrapped:
    """TransferQueue hands back non-tensor fields wrapped in an object with ``.data``."""

    def __init__(self, data):
        self.data = data


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ([], {}),  # empty batch
        (
            [{"reward_extra_info": {"acc": 1.0}}, {"reward_extra_info": {"acc": 0.0}}],
            {"reward/acc/mean": 0.5},
        ),
        (
            [{"reward_extra_info": {"pred": "x", "acc": True}}],
            {"reward/acc/mean": 1.0},
        ),  # strings skipped, bool
        (
            [{"reward_extra_info": {"n": np.int64(3)}}, {"reward_extra_info": {}}],
            {"reward/n/mean": 3.0},
        ),  # per-key
        ([{"reward_extra_info": {"x": float("nan")}}], {}),  # non-finite dropped
        ([_Wrapped({"reward_extra_info": {"acc": 0.25}})], {"reward/acc/mean": 0.25}),  # TQ wrapper
        ([{"no_reward": 1}, None, "junk"], {}),  # malformed rows ignored
        (  # verl's dapo manager: 0-d torch tensors; multi-element values skipped
            [
                {
                    "reward_extra_info": {
                        "overlong": torch.tensor(True),
                        "overlong_reward": torch.tensor(-0.5),
                    }
                },
                {"reward_extra_info": {"overlong": False, "overlong_reward": 0, "v": torch.ones(3)}},
            ],
            {"reward/overlong/mean": 0.5, "reward/overlong_reward/mean": -0.25},
        ),
    ],
)
def test_reward_extra_metrics(fields, expected):
    assert reward_extra_metrics(fields) == pytest.approx(expected)


def test_doctests():
    assert doctest.testmod(trainer).failed == 0
