"""Every flag of the data commands (``ramp build``, ``qa prepare``, ``corpus build``) says what it does
and, where it has one, its default (issue 21)."""

from __future__ import annotations

import argparse
import importlib

import pytest

DATA_CLI_MODULES = ["masksearch.data.ramp_cli", "masksearch.data.qa_cli", "masksearch.data.corpus_cli"]


def _leaf_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """``(("ramp", "build"), parser)`` for every command that has no sub-commands of its own."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for sub in subs:
        for name, child in sub.choices.items():
            yield from _leaf_parsers(child, (*path, name))


def _flags():
    for module in DATA_CLI_MODULES:
        parser = argparse.ArgumentParser()
        importlib.import_module(module).register(parser.add_subparsers(dest="command"))
        for path, leaf in _leaf_parsers(parser):
            for action in leaf._actions:
                if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                    continue
                yield pytest.param(action, id=f"{' '.join(path)} {action.option_strings[0]}")


@pytest.mark.parametrize("action", list(_flags()))
def test_flag_has_help_that_states_its_default(action):
    assert action.help and action.help.strip(), "no help text"
    if action.required:
        assert "required" in action.help, action.help
    else:
        assert "(default" in action.help, action.help
        if action.default not in (None, False, True):
            # a concrete default is spelled out, e.g. "(default: 30)"; 60.0 may read "60"
            spelled = {str(action.default)} | (
                {f"{action.default:g}"} if isinstance(action.default, float) else set()
            )
            assert any(f"(default: {s}" in action.help for s in spelled), action.help


def test_covers_the_flags_issue_21_names():
    names = {p.id for p in _flags()}
    for flag in ("--min-masks", "--max-masks", "--seed", "--val-fraction", "--extractor", "--min-words",
                 "--max-words", "--spacy-model", "--llm-timeout", "--agent-name", "--overwrite",
                 "--llm-api-key-env"):  # fmt: skip
        assert f"ramp build {flag}" in names
    assert {"qa prepare --split", "qa prepare --agent-name", "corpus build --out"} <= names
