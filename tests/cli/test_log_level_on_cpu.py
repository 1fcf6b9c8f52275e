"""``masksearch --log-level``: a bogus value is a one-line error (exit 2), not a ValueError traceback;
the flag works before the subcommand and after it (the last one wins); ``--version``."""

from __future__ import annotations

import argparse

import pytest

from masksearch.cli.main import build_parser, main
from masksearch.search_tool.cli import main as search_main


@pytest.mark.parametrize("entry", [main, search_main])
def test_bogus_log_level(entry, capsys):
    assert entry(["--log-level", "bogus", "search", "--index", "nowhere", "q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--log-level 'bogus'" in err and "INFO" in err


def test_lowercase_level_still_works(tmp_path, capsys):
    assert main(["--log-level", "warning", "search", "--index", str(tmp_path / "none"), "q"]) == 2
    assert "index folder not found" in capsys.readouterr().err


class TestAfterTheSubcommand:
    """``--log-level`` is accepted before the subcommand, after it, and after a nested action."""

    @pytest.mark.parametrize(
        ("argv", "level"),
        [
            (["search", "--index", "x", "q"], "INFO"),  # not given: the top-level default
            (["--log-level", "DEBUG", "search", "--index", "x", "q"], "DEBUG"),  # before (as before)
            (["search", "--log-level", "DEBUG", "--index", "x", "q"], "DEBUG"),  # after the command
            # after a nested action
            (["index", "build", "--corpus", "c", "--out", "o", "--log-level", "WARNING"], "WARNING"),
            # on the group, before its action
            (["index", "--log-level", "ERROR", "build", "--corpus", "c", "--out", "o"], "ERROR"),
            (["model", "tiny", "--out", "o", "--log-level", "debug"], "debug"),  # case kept; checked later
            (["--log-level", "DEBUG", "eval", "--log-level", "WARNING"], "WARNING"),  # the last one wins
        ],
    )
    def test_parsed_value(self, argv, level):
        assert build_parser().parse_args(argv).log_level == level

    def test_every_subcommand_accepts_it(self):
        def walk(parser, path):
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    for name, sub in action.choices.items():
                        yield (*path, name), sub
                        yield from walk(sub, (*path, name))

        paths = list(walk(build_parser(), ()))
        assert len(paths) > 10
        for path, sub in paths:
            assert "--log-level" in sub._option_string_actions, " ".join(path)

    def test_bogus_value_after_the_subcommand_is_one_line(self, capsys):
        assert main(["search", "--index", "nowhere", "q", "--log-level", "bogus"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--log-level 'bogus'" in err

    def test_lowercase_after_the_subcommand_still_works(self, tmp_path, capsys):
        assert main(["search", "--index", str(tmp_path / "none"), "--log-level", "warning", "q"]) == 2
        assert "index folder not found" in capsys.readouterr().err


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"masksearch {version('masksearch')}"
