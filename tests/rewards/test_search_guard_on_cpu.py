"""The reward's search-health guards: closed-book RAMP answers and answers found in no observation.

Through ``compute_score`` (what verl calls) and the guard itself; off by default, keys only when on.
"""

from __future__ import annotations

import doctest
import pickle

import pytest

from masksearch.rewards import RESULT_KEYS, compute_score
from masksearch.rewards import search_guard as sg
from masksearch.rewards.search_guard import SearchGuard, observations_of, ungrounded_fills

OBS = "<information>Doc 1(Title: Eiffel Tower) The tower in Paris opened in 1889.</information>"
SEARCHED = f"<think>t</think><search>eiffel tower</search>{OBS}<think>ok</think><answer>Paris\n1889</answer>"
CLOSED = "<think>I know this.</think><answer>Paris\n1889</answer>"
GUESSED = f"<think>t</think><search>eiffel tower</search>{OBS}<think>ok</think><answer>Lyon\n1889</answer>"
GOLD = ["Paris", "1889"]


class TestClosedBook:
    @pytest.mark.parametrize(
        ("mode", "response", "data_source", "expected"),
        [
            ("zero", CLOSED, "ramp", {"score": 0.0, "acc": 0.0, "closed_book": 1.0}),  # answer reward removed
            ("penalty", CLOSED, "ramp", {"score": 0.5, "acc": 1.0, "closed_book": 1.0}),  # 1 - 0.5, acc kept
            ("flag", CLOSED, "ramp", {"score": 1.0, "acc": 1.0, "closed_book": 1.0}),  # logged only
            ("zero", SEARCHED, "ramp", {"score": 1.0, "acc": 1.0, "closed_book": 0.0}),  # searched: untouched
            ("zero", CLOSED, "hotpotqa", {"score": 1.0, "closed_book": 0.0}),  # QA rows: untouched
            ("zero", "<think>t</think>", "ramp", {"score": 0.0, "closed_book": 0.0}),  # no answer at all
        ],
    )
    def test_modes(self, mode, response, data_source, expected):
        gold = GOLD if data_source == "ramp" else ["Paris 1889"]
        result = compute_score(data_source, response, gold, closed_book=mode)
        assert {k: result[k] for k in expected} == expected

    def test_zero_keeps_the_format_part(self):
        result = compute_score("ramp", CLOSED, GOLD, closed_book="zero", format_weight=0.2)
        assert result["score"] == pytest.approx(0.2)

    def test_off_by_default_adds_no_key(self):
        assert list(compute_score("ramp", CLOSED, GOLD)) == list(RESULT_KEYS)

    def test_same_keys_on_every_path(self):
        """verl builds its extra-info arrays from the first sample's keys."""
        kwargs = {"closed_book": "penalty", "check_grounding": True}
        keys = {
            tuple(compute_score("ramp", r, GOLD, **kwargs)) for r in (SEARCHED, CLOSED, "", None, "<answer>")
        }
        assert len(keys) == 1

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"closed_book": "on"}, "choose one of off, flag, zero, penalty"),
            ({"closed_book": "penalty", "closed_book_penalty": -1}, "closed_book_penalty must be"),
            ({"closed_book": "penalty", "closed_book_penalty": float("nan")}, "closed_book_penalty must be"),
        ],
    )
    def test_bad_settings_raise_value_error(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            compute_score("ramp", CLOSED, GOLD, **kwargs)


class TestGrounding:
    @pytest.mark.parametrize(
        ("response", "fills", "answer"),
        [
            (SEARCHED, 0, 0.0),  # both fills are in the document
            (GUESSED, 1, 1.0),  # "Lyon" is nowhere in what was retrieved
            (CLOSED, 2, 1.0),  # no observation at all
            ("<think>t</think>", 0, 0.0),  # no answer: nothing to ground
        ],
    )
    def test_counts_fills_not_in_any_observation(self, response, fills, answer):
        result = compute_score("ramp", response, GOLD, check_grounding="true")
        assert (result["ungrounded_fills"], result["ungrounded_answer"]) == (fills, answer)
        assert result["score"] == compute_score("ramp", response, GOLD)["score"]  # logged only

    def test_qa_answer_is_one_fill(self):
        result = compute_score("nq", GUESSED.replace("Lyon\n1889", "Paris"), ["Paris"], check_grounding=True)
        assert result["ungrounded_fills"] == 0

    def test_words_not_substrings(self):
        assert ungrounded_fills(["89"], ["opened in 1889"]) == 1  # a piece of a word is not the word
        assert ungrounded_fills(["Eiffel tower!"], ["the EIFFEL   Tower."]) == 0  # case, spacing, punctuation

    def test_observations_skip_everything_else(self):
        assert observations_of(SEARCHED) == [OBS.removeprefix("<information>").removesuffix("</information>")]
        assert observations_of(None) == [] and observations_of("") == []


def test_guard_is_picklable_and_ignores_extra_kwargs():
    guard = SearchGuard(closed_book="penalty", closed_book_penalty=0.3, check_grounding=True)
    assert pickle.loads(pickle.dumps(guard)) == guard
    result = compute_score("ramp", CLOSED, GOLD, closed_book="flag", reward_router_address="x", unknown=1)
    assert result["closed_book"] == 1.0


def test_doctests():
    result = doctest.testmod(sg, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
