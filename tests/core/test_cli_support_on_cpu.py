"""core.cli_support.flag_values / settings_from_args: keyword arguments from the flags named like them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from masksearch.core.cli_support import flag_values, settings_from_args


@dataclass(frozen=True)
class _Settings:
    seed: int = 0
    topk: int = 3
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.topk < 1:
            raise ValueError(f"topk must be >= 1, got {self.topk}")


ARGS = argparse.Namespace(seed=7, topk=5, out="o")  # no --limit flag; --out is no setting


def test_flag_values_takes_only_the_flags_there():
    assert flag_values(ARGS, ("seed", "limit", "out")) == {"seed": 7, "out": "o"}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, _Settings(seed=7, topk=5)),  # flags named like fields; limit keeps its default
        ({"topk": 2, "limit": 9}, _Settings(seed=7, topk=2, limit=9)),  # given values win and add
    ],
)
def test_settings_from_args(given, expected):
    assert settings_from_args(_Settings, ARGS, **given) == expected


def test_the_settings_still_check_their_values():
    with pytest.raises(ValueError, match="topk must be >= 1"):
        settings_from_args(_Settings, ARGS, topk=0)
