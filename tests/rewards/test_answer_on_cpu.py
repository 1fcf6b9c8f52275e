"""Tests for masksearch.rewards.answer: tables, gold formats, bounds, pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masksearch.rewards import answer as a

RULE_REWARDS = [a.exact_match, a.token_f1, a.token_recall, a.recall_length_penalty]
GOLD_ITEMS = st.one_of(st.text(max_size=30), st.none(), st.integers(), st.floats(allow_nan=True))


class TestNormalize:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("The  Eiffel Tower!", "eiffel tower"),  # article, punctuation, case
            ("  a  b\tc\n", "b c"),  # article "a" dropped, whitespace collapsed
            ("Theatre", "theatre"),  # "the" inside a word is kept
            ("Paris, France.", "paris france"),  # punctuation between words
            ("Ünïcødé Straße", "ünïcødé straße"),  # non-ASCII kept, lowercased
            (None, ""),  # None
            (1889, "1889"),  # number
        ],
    )
    def test_table(self, text, expected):
        assert a.normalize_answer(text) == expected

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=200))
    def test_idempotent(self, text):
        once = a.normalize_answer(text)
        assert a.normalize_answer(once) == once


class TestRewards:
    @pytest.mark.parametrize(
        ("prediction", "golds", "em", "f1", "recall"),
        [
            ("Paris", ["paris"], 1.0, 1.0, 1.0),  # case-insensitive exact
            ("The Paris", ["Paris"], 1.0, 1.0, 1.0),  # article ignored
            ("Paris France", ["Paris"], 0.0, 2 / 3, 1.0),  # longer prediction: recall 1, F1 < 1
            ("Paris", ["Paris France"], 0.0, 2 / 3, 0.5),  # shorter prediction
            ("London", ["Paris", "London"], 1.0, 1.0, 1.0),  # max over aliases
            ("Berlin", ["Paris"], 0.0, 0.0, 0.0),  # wrong
            ("", ["Paris"], 0.0, 0.0, 0.0),  # empty prediction
            ("Paris", [], 0.0, 0.0, 0.0),  # no gold
            ("the", ["a"], 1.0, 1.0, 1.0),  # both normalise to "" (SQuAD: equal -> 1)
            ("1889", [1889], 1.0, 1.0, 1.0),  # numeric gold
            (None, ["Paris"], 0.0, 0.0, 0.0),  # None prediction
        ],
    )
    def test_table(self, prediction, golds, em, f1, recall):
        assert a.exact_match(prediction, golds) == em
        assert a.token_f1(prediction, golds) == pytest.approx(f1)
        assert a.token_recall(prediction, golds) == pytest.approx(recall)

    @pytest.mark.parametrize(
        ("prediction", "max_ratio", "expected"),
        [
            ("Paris", 2.0, 1.0),  # same length: no penalty
            ("Paris France", 2.0, 1.0),  # 2x the gold: still allowed
            ("Paris France Europe Earth", 2.0, 0.5),  # 4x: recall 1 * (2*1/4)
            ("Paris France", 1.0, 0.5),  # tighter ratio
            ("Berlin Paris Rome London Madrid Oslo Bern Wien", 2.0, 0.25),  # padding with guesses
        ],
    )
    def test_recall_length_penalty(self, prediction, max_ratio, expected):
        assert a.RecallLengthPenalty(max_ratio)(prediction, ["Paris"]) == pytest.approx(expected)

    @pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "x", None])
    def test_recall_length_penalty_rejects_bad_ratio(self, bad):
        with pytest.raises(ValueError, match="max_ratio"):
            a.make_recall_length_penalty(bad)

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=80), st.lists(GOLD_ITEMS, max_size=4))
    def test_bounds_and_never_raises(self, prediction, golds):
        for reward in RULE_REWARDS:
            assert 0.0 <= reward(prediction, golds) <= 1.0

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=60), st.text(max_size=60))
    def test_em_le_f1_single_gold(self, prediction, gold):
        assert a.exact_match(prediction, [gold]) <= a.token_f1(prediction, [gold])

    @settings(max_examples=100, deadline=None)
    @given(st.text(max_size=60), st.text(max_size=60))
    def test_penalty_le_recall(self, prediction, gold):
        assert a.recall_length_penalty(prediction, [gold]) <= a.token_recall(prediction, [gold])


class TestGolds:
    @pytest.mark.parametrize(
        ("ground_truth", "expected"),
        [
            ("Paris", ["Paris"]),  # a string is one alias
            (["Paris", "Paris, France"], ["Paris", "Paris, France"]),  # a list
            (np.array(["Paris", "City of Light"]), ["Paris", "City of Light"]),  # numpy str array (verl)
            (np.array(["Paris", None], dtype=object), ["Paris"]),  # numpy object array with None
            ({"target": np.array(["Paris"])}, ["Paris"]),  # Search-R1 dict
            ([["a1", "a2"], "b"], ["a1", "a2", "b"]),  # nested
            ([None, "", "  ", float("nan")], []),  # nothing usable
            (None, []),  # None
            (42, ["42"]),  # number
            ({"unrelated": 1}, []),  # dict without a known key
        ],
    )
    def test_as_gold_list(self, ground_truth, expected):
        assert a.as_gold_list(ground_truth) == expected

    def test_rewards_accept_any_gold_shape(self):
        for golds in ("paris", np.array(["paris"]), {"target": ["paris"]}):
            assert a.exact_match("Paris", golds) == 1.0

    @pytest.mark.parametrize(
        ("ground_truth", "kind", "expected"),
        [
            (["Paris", ["1889", "in 1889"], None], "ramp", [["Paris"], ["1889", "in 1889"], []]),  # per mask
            ({"spans": ["a", "b"]}, "ramp", [["a"], ["b"]]),
            # QA: one alias group; blanks dropped (the viewer's own reader kept " ")
            (["Paris", ["City of Light"], " "], "qa", [["Paris", "City of Light"]]),
            ({"answer": "x"}, "qa", [["x"]]),  # every key the reward reads (the viewer's gave [[]])
            ({"target": None, "answers": ["y"]}, "qa", [[]]),  # the first key present wins
            (np.array([None, "y"], dtype=object), "qa", [["y"]]),  # verl's arrays
            (None, "qa", [[]]),
        ],
    )
    def test_gold_groups(self, ground_truth, kind, expected):
        from masksearch.rewards.hybrid import gold_groups

        assert gold_groups(ground_truth, kind) == expected


class TestMentions:
    """The one "is this answer in that text" check (grounding guard, rules teacher, viewer)."""

    def test_answer_words(self):
        # moved from the rules teacher's normalise(), which it replaces
        assert a.answer_words(" The 7.7-km  Road!") == "the 7 7 km road"

    @pytest.mark.parametrize(
        ("text", "answer", "expected"),
        [
            ("Built by gustave  EIFFEL in 1889.", "Gustave Eiffel", True),  # case and spacing
            ("opened (1887-1889)", "1889", True),  # punctuation separates words
            ("in Paris France", "Paris, France", True),  # punctuation ignored on both sides
            ("founded in 1915.", "15", False),  # whole words only
            ("the Eiffel Tower", "Eiffel", True),
            ("x", "", False),  # no words: never mentioned
            ("x", "!!", False),
            (None, "x", False),  # no text
        ],
    )
    def test_mentions(self, text, answer, expected):
        assert a.mentions(text, answer) is expected


class TestPickle:
    @pytest.mark.parametrize("reward", [*RULE_REWARDS, a.RecallLengthPenalty(3.0)])
    def test_picklable(self, reward):
        clone = pickle.loads(pickle.dumps(reward))
        assert clone("Paris France", ["Paris"]) == reward("Paris France", ["Paris"])

    def test_stable_name(self):
        assert a.RecallLengthPenalty(5).__name__ == "recall_length_penalty"
        assert a.RecallLengthPenalty(5) == pickle.loads(pickle.dumps(a.RecallLengthPenalty(5)))
