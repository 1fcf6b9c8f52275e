"""Every flag of every ``masksearch`` command has a help text, and a flag with a default says it.

The parser is built once and walked recursively (commands, groups, nested actions), so a flag
added anywhere later is checked without touching this test.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from masksearch.cli.main import build_parser

# Flags argparse adds by itself; their help is argparse's own.
BUILTIN = (argparse._HelpAction, argparse._VersionAction)


def _walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{path} {name}")


def _flags() -> Iterator[tuple[str, argparse.Action]]:
    seen: set[int] = set()
    for path, parser in _walk(build_parser(), "masksearch"):
        if id(parser) in seen:  # an alias points at the same parser
            continue
        seen.add(id(parser))
        for action in parser._actions:
            if action.option_strings and not isinstance(action, BUILTIN):
                yield f"{path} {'/'.join(action.option_strings)}", action


def _has_stated_default(action: argparse.Action) -> bool:
    default = action.default
    if default is None or default is argparse.SUPPRESS or default is False:
        return True  # nothing to state (store_true, optional value, the top-level --log-level copies)
    return "default" in (action.help or "").lower()


def test_the_walk_reaches_nested_actions():
    names = {name for name, _ in _flags()}
    assert "masksearch --log-level" in names
    assert "masksearch model tiny --hidden-size" in names  # a nested action
    assert len(names) > 50


def test_every_flag_has_help():
    missing = sorted(name for name, action in _flags() if not (action.help or "").strip())
    assert not missing, "flags without help:\n" + "\n".join(missing)


def test_every_default_is_stated_in_the_help():
    unstated = sorted(
        f"{name} (default {action.default!r})" for name, action in _flags() if not _has_stated_default(action)
    )
    assert not unstated, "flags whose help does not state their default:\n" + "\n".join(unstated)
