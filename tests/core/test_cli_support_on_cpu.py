"""core.cli_support: keyword arguments from the flags named like them; flags that state their default;
commands that take their help from their handler."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from masksearch.core.cli_support import add_command, add_option, flag_values, settings_from_args


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


class TestAddOption:
    @pytest.mark.parametrize(
        ("default", "kwargs", "argv", "value", "help"),
        [
            (3, {}, ["--x", "5"], 5, "X (default: 3)."),  # int default: int flag
            (0.05, {}, ["--x", "1e-1"], 0.1, "X (default: 0.05)."),  # float default: float flag
            (60.0, {}, [], 60.0, "X (default: 60)."),  # a whole float reads like an int
            ("em", {}, ["--x", "f1"], "f1", "X (default: em)."),  # str default: str flag
            (False, {"shown": "off"}, ["--x"], True, "X (default: off)."),  # False: a switch
            (False, {}, [], False, "X"),  # a switch with nothing to say: help as given
            (None, {"shown": "all", "type": int}, ["--x", "2"], 2, "X (default: all)."),  # None: type given
            (None, {}, [], None, "X"),  # None with nothing to say: help as given
            ("a", {"choices": ("a", "b")}, ["--x", "b"], "b", "X (default: a)."),  # keywords pass through
        ],
    )
    def test_type_default_and_help(self, default, kwargs, argv, value, help):
        parser = argparse.ArgumentParser()
        action = add_option(parser, "--x", default, "X", **kwargs)
        assert action.help == help
        assert parser.parse_args(argv).x == value


def test_add_command_takes_its_texts_from_the_handler_docstring():
    def handler(args):
        """Do the thing.

        Longer words
        over two lines."""

    def bare(args):
        """Only a help line."""

    subparsers = argparse.ArgumentParser().add_subparsers(dest="command")
    parser = add_command(subparsers, "do", handler)
    assert (parser.description, parser.get_default("handler")) == ("Longer words over two lines.", handler)
    assert [a.help for a in subparsers._choices_actions] == ["Do the thing."]
    assert add_command(subparsers, "bare", bare).description is None
