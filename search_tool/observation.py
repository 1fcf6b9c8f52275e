"""The observation format the model reads, and its inverse, in one place.

Search-R1's ``_passages2string``, one document per line (the env strips it and wraps it in
``<information>``)::

    Doc 1(Title: Paris) Capital of France.
    Doc 2(Title: Lyon (city)) A city.

:func:`format_observation` writes it; :func:`parse_observation` reads it back into
:class:`ObservedDoc` records, for everything that looks inside an observation (the scripted
policies, the rules teacher's observer, the viewer), so none of them keeps a regex of its own.

What the format carries (``tests/search_tool/test_observation_on_cpu.py`` pins it with a property
test): ``parse_observation(format_observation(hits))`` gives back every hit's title, character for
character, and its text without surrounding whitespace (the env strips the observation anyway),
when

* the title holds no newline and its parentheses are balanced (``Lyon (city)``, ``(a) b``), and
* no line of a text starts with the next document's header (``Doc {i+1}(Title: ``).

Texts may hold newlines and parentheses. The reader is lenient with what the env makes of an
observation: a header cut by ``max_obs_tokens`` (``Doc 3(Title: Tru``) is a document with that
title and no text, a title with an unmatched ``(`` ends at its first ``) ``, and text before the
first header or without any header (``Search failed: …``) is no document.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from masksearch.search_tool.types import Hit

__all__ = ["ObservedDoc", "format_observation", "parse_observation"]

_HEADER = re.compile(r"^Doc (\d+)\(Title: ", re.MULTILINE)


class ObservedDoc(NamedTuple):
    """One document of an observation; ``str(doc)`` is its line as the model read it."""

    number: int
    title: str
    text: str

    def __str__(self) -> str:
        return f"Doc {self.number}(Title: {self.title}) {self.text}"


def format_observation(hits: Sequence[Hit]) -> str:
    """Render hits as Search-R1 does (``_passages2string``); the env wraps it in ``<information>``.

    >>> print(format_observation([Hit("1", "Paris", "Capital of France.", 3.2), Hit("2", "Lyon", "A city.", 1.0)]), end="")
    Doc 1(Title: Paris) Capital of France.
    Doc 2(Title: Lyon) A city.
    """
    return "".join(f"{ObservedDoc(i, hit.title, hit.text)}\n" for i, hit in enumerate(hits, start=1))


def _title_and_text(body: str) -> tuple[str, str]:
    """Split what follows ``(Title: `` at the ``)`` that closes it (parentheses counted on the line)."""
    line = body.partition("\n")[0]
    depth = 0
    for i, char in enumerate(line):
        if char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif char == ")":
            return body[:i], body[i + 1 :]
    close = line.find(") ")  # a title with an unmatched "("
    if close >= 0:
        return body[:close], body[close + 1 :]
    return line, body[len(line) :]  # a header cut short: no text on its line


def parse_observation(text: str) -> list[ObservedDoc]:
    """The documents of an observation (the text inside ``<information>``), in order.

    A header counts only at the start of a line and, after the first, only with the next number,
    so a text quoting ``Doc 7(Title: …`` stays text (see the module docstring for the rest).

    >>> parse_observation("Doc 1(Title: Paris) Capital.\\nDoc 2(Title: Lyon (city)) A city.\\n")
    [ObservedDoc(number=1, title='Paris', text='Capital.'), ObservedDoc(number=2, title='Lyon (city)', text='A city.')]
    >>> parse_observation("Search failed: timeout"), parse_observation("Doc 1(Title: Cut")
    ([], [ObservedDoc(number=1, title='Cut', text='')])
    """
    starts: list[re.Match[str]] = []
    for match in _HEADER.finditer(text):
        if not starts or int(match.group(1)) == int(starts[-1].group(1)) + 1:
            starts.append(match)
    docs = []
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        title, rest = _title_and_text(text[match.end() : end])
        docs.append(ObservedDoc(int(match.group(1)), title, rest.strip()))
    return docs
