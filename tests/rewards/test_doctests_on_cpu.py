"""Every docstring example in masksearch.rewards (and the example plugin) runs and passes."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
from pathlib import Path

import pytest

MODULES = [
    "masksearch.rewards",
    "masksearch.core.grammar",
    "masksearch.rewards.answer",
    "masksearch.rewards.judge",
    "masksearch.rewards.ramp",
    "masksearch.rewards.hybrid",
    "masksearch.rewards.registry",
]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rewards" / "contains_answer.py"


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no doctest"


def test_example_plugin_doctests():
    spec = importlib.util.spec_from_file_location("contains_answer_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert doctest.testmod(module).failed == 0
