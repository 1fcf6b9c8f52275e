"""The observation format and its inverse (masksearch.search_tool.observation), and the readers that
use them: the reward's grounding check, the rules teacher's observer and the viewer's flag agree."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from masksearch.search_tool import observation
from masksearch.search_tool.observation import ObservedDoc, format_observation, parse_observation
from masksearch.search_tool.types import Hit

HITS = [Hit("7", "Paris", "Capital of France.", 2.5), Hit("9", "Lyon", "A city.", 1.0)]

# What the format carries (module docstring): titles without newlines, parentheses balanced...
_PLAIN = st.one_of(st.sampled_from([" ", "a b", ": "]), st.text(st.characters(exclude_characters="\n()")))
_TITLES = st.recursive(
    _PLAIN,
    lambda inner: st.lists(st.one_of(_PLAIN, inner.map(lambda t: f"({t})")), max_size=4).map("".join),
    max_leaves=8,
)
# ... and texts of anything, with the pieces of the format itself over-represented.
_PIECES = st.sampled_from(["Doc 1(Title: ", "Doc 2(Title: ", "Doc 3(Title: ", "(", ")", ") ", "\n", " ", "x"])
_TEXTS = st.lists(st.one_of(st.text(max_size=8), _PIECES), max_size=10).map("".join)
_HITS = st.lists(st.tuples(_TITLES, _TEXTS), max_size=4).map(
    lambda pairs: [Hit(str(i), title, text, 0.0) for i, (title, text) in enumerate(pairs)]
)


def _carried(hits: list[Hit]) -> bool:
    """The one thing a text may not hold: a line starting with the next document's header."""
    return all(f"\nDoc {i + 1}(Title: " not in hit.text for i, hit in enumerate(hits, start=1))


class TestFormatObservation:
    def test_search_r1_text(self):
        assert (
            format_observation(HITS) == "Doc 1(Title: Paris) Capital of France.\nDoc 2(Title: Lyon) A city.\n"
        )

    def test_empty(self):
        assert format_observation([]) == ""

    def test_doctests(self):
        result = doctest.testmod(observation)
        assert result.failed == 0 and result.attempted > 0


class TestParseObservation:
    @given(_HITS)
    def test_round_trip(self, hits):
        assume(_carried(hits))
        expected = [ObservedDoc(i, h.title, h.text.strip()) for i, h in enumerate(hits, start=1)]
        assert parse_observation(format_observation(hits)) == expected
        assert parse_observation(format_observation(hits).strip()) == expected  # as the env shows it

    @pytest.mark.parametrize(
        ("text", "docs"),
        [
            # titles with parentheses, balanced: kept whole
            ("Doc 1(Title: Lyon (city)) A city.", [(1, "Lyon (city)", "A city.")]),
            ("Doc 1(Title: (a) b) c", [(1, "(a) b", "c")]),
            # an unmatched "(" in a title: cut at its first ") "
            ("Doc 1(Title: Foo (bar) x (y) z", [(1, "Foo (bar", "x (y) z")]),
            # cut by max_obs_tokens inside the header
            ("Doc 1(Title: Tru", [(1, "Tru", "")]),
            ("Doc 1(Title: A) x\nDoc 2(Title: B", [(1, "A", "x"), (2, "B", "")]),
            # a text quoting a header that is not the next one stays text
            ("Doc 1(Title: A) x\nDoc 5(Title: B) y", [(1, "A", "x\nDoc 5(Title: B) y")]),
            # a header counts only at the start of a line
            ("Doc 1(Title: A) see Doc 2(Title: B) y", [(1, "A", "see Doc 2(Title: B) y")]),
            # no documents: a retrieval error, the env's "no results", free text
            ("Search failed: search timed out after 10s", []),
            ("", []),
            # text before the first header (not something the env writes) is no document
            ("preamble\nDoc 1(Title: A) x", [(1, "A", "x")]),
        ],
    )
    def test_lenient_reading(self, text, docs):
        assert parse_observation(text) == [ObservedDoc(*d) for d in docs]


def _viewer_flag(response: str, gold: str) -> bool:
    from masksearch.viewer.sources import Sample

    sample = Sample("r", "eval", "0", "qa", [], response, [[gold]], None, {}, "source", {}, "source")
    sample.finish()
    return sample.gold_in_docs


def _reward_grounded(response: str, gold: str) -> bool:
    from masksearch.rewards import compute_score

    out = compute_score("qa", f"{response}<answer>{gold}</answer>", [gold], check_grounding=True)
    return out["ungrounded_fills"] == 0


def _teacher_found(observation_text: str, gold: str) -> bool:
    from masksearch.sft.teachers.rules import find_in_observation

    return find_in_observation(observation_text, [gold]) is not None


TOWER = "Doc 1(Title: Paris) Paris is big.\nDoc 2(Title: Eiffel Tower) Built by gustave  EIFFEL in 1887-1889."


class TestOneReadingOfAnObservation:
    """Issue 23: the teacher's observer, the reward's grounding guard and the viewer's "answer was
    in a document" flag each had their own normaliser and could disagree; now they read an
    observation the same way (``masksearch.rewards.answer.mentions``)."""

    @pytest.mark.parametrize(
        ("body", "gold", "found"),
        [
            (TOWER, "Gustave Eiffel", True),  # case and spacing ignored
            (TOWER, "eiffel!", True),  # punctuation ignored
            (TOWER, "1889", True),  # "-" separates words
            (TOWER, "1887 1889", True),  # the viewer used to say no (punctuation kept)
            (TOWER, "Eiff", False),  # not a whole word
            (TOWER, "89", False),
            (TOWER, "Eiffel Tower", True),  # titles are part of what the model read
            (TOWER, "Lyon", False),
            ("Doc 1(Title: X) a snake case name", "snake_case", False),  # the teacher used to say yes
            ("Doc 1(Title: Lyon (city)) A city.", "Lyon (city)", True),
            ("Search failed: HTTP 503", "HTTP 503", True),  # what the model saw, documents or not
            ("No results", "Paris", False),
        ],
    )
    def test_reward_teacher_and_viewer_agree(self, body, gold, found):
        from masksearch.env.session import OBS_PREFIX, OBS_SUFFIX

        observation_text = OBS_PREFIX + body + OBS_SUFFIX
        response = f"<think>t</think>\n<search>q</search>{observation_text}<think>t</think>\n"
        assert _reward_grounded(response, gold) is found
        assert _teacher_found(observation_text, gold) is found
        assert _viewer_flag(response, gold) is found

    def test_scripted_policy_reads_titles_with_parentheses(self):
        from masksearch.env.scripted import ASSISTANT_START, END_OF_TURN, USER_START, search_then_answer
        from masksearch.env.session import OBS_PREFIX, OBS_SUFFIX

        context = (
            f"{USER_START}Passage: [mask] is a city.\nNumber of masks: 1{END_OF_TURN}\n{ASSISTANT_START}"
            f"<search>city</search>{OBS_PREFIX}Doc 1(Title: Lyon (city)) A city.{OBS_SUFFIX}"
        )
        assert "<answer>Lyon (city)</answer>" in search_then_answer(context)
