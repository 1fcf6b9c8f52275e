"""``masksearch --log-level bogus`` is a one-line error (exit 2), not a ValueError traceback."""

from __future__ import annotations

import pytest

from masksearch.cli.main import main
from masksearch.search_tool.cli import main as search_main


@pytest.mark.parametrize("entry", [main, search_main])
def test_bogus_log_level(entry, capsys):
    assert entry(["--log-level", "bogus", "search", "--index", "nowhere", "q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--log-level 'bogus'" in err and "INFO" in err


def test_lowercase_level_still_works(tmp_path, capsys):
    assert main(["--log-level", "warning", "search", "--index", str(tmp_path / "none"), "q"]) == 2
    assert "index folder not found" in capsys.readouterr().err
