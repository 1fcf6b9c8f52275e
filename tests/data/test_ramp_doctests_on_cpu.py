"""Run the doctests of the RAMP/QA data modules and the curriculum metrics, so they stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "masksearch.data.corpus",
    "masksearch.data.masking",
    "masksearch.data.spans",
    "masksearch.data.prompts",
    "masksearch.data.qa",
    "masksearch.data.qa_sets",
    "masksearch.curriculum.metrics",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
