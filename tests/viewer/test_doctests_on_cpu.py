"""Run the doctests of the viewer modules, so the documented examples stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["masksearch.viewer.sources", "masksearch.viewer.site"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
